// Why: the engine's templates written once against Ops<T> (engine/model/model_impl.h, optim_impl.h,
// engine/run/trainer_impl.h) instantiated for bf16, the type only the CUDA backend computes in. CMake
// compiles this file into the CUDA library only, so a CPU build does not pay for it. The fp32 GPU mode
// uses the float instantiations of engine/model/model.cpp, optim.cpp and engine/run/trainer.cpp: they
// depend on T alone, not on the backend behind Ops<float>.
#include "engine/model/model_impl.h"
#include "engine/model/optim_impl.h"
#include "engine/run/trainer_impl.h"

namespace mt {

template class Model<bf16>;
template class Optimizer<bf16>;
template TrainResult train<bf16>(const RunConfig&, const TrainOptions&, Ops<bf16>&, const ProcessGrid&);
template json evaluate_checkpoint<bf16>(const RunConfig&, const std::string&, Ops<bf16>&, const ProcessGrid&);

}  // namespace mt
