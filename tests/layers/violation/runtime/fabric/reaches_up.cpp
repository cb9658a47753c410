// Not built: the fabric reaching up into the executor, which the layer check must refuse.
#include "executor/worker.hpp"
