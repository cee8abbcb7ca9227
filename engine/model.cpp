// Why: the CPU instantiations of Model<T>: float for training, double for the gradient checks.
#include "engine/model.h"

#include "engine/model_impl.h"

namespace mt {

template class Model<float>;
template class Model<double>;

}  // namespace mt
