// Why: the engine's templates written once against Ops<T> (engine/model_impl.h, optim_impl.h,
// trainer_impl.h) are instantiated for bf16 here, in the CUDA library, the only backend that computes
// in bf16. The fp32 GPU mode uses the CPU library's float instantiations (engine/model.cpp, optim.cpp,
// trainer.cpp): they depend on T alone, not on the backend behind Ops<float>.
#include "engine/model_impl.h"
#include "engine/optim_impl.h"
#include "engine/trainer_impl.h"

namespace mt {

template class Model<bf16>;
template class Optimizer<bf16>;
template TrainResult train<bf16>(const RunConfig&, const TrainOptions&, Ops<bf16>&, const ProcessGrid&);
template json evaluate_checkpoint<bf16>(const RunConfig&, const std::string&, Ops<bf16>&, const ProcessGrid&);

}  // namespace mt
