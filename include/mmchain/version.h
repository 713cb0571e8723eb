/* mmchain — the library's version. */
#ifndef MMCHAIN_VERSION_H
#define MMCHAIN_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library version, "MAJOR.MINOR.PATCH" (the CMake project version the
 * library was built from). */
const char *mc_version(void);

#ifdef __cplusplus
}
#endif
#endif
