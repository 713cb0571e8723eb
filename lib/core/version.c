#include "mmchain/version.h"

const char *mc_version(void) { return MMCHAIN_VERSION; }
