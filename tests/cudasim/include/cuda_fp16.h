/* cudasim: __half on the CPU (cudasim.h) */
#include "cudasim.h"
