#include "mmchain/mmchain.h"

const char *mc_version(void) { return MMCHAIN_VERSION; }
