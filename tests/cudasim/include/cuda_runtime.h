/* cudasim: the CUDA runtime API on the CPU (cudasim.h) */
#include "cudasim.h"
