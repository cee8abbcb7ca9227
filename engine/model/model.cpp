// Why: the CPU instantiations of Model<T>: float for training, double for the gradient checks.
#include "engine/model/model.h"

#include "engine/model/model_impl.h"

namespace mt {

template class Model<float>;
template class Model<double>;

}  // namespace mt
