// accept4 and pthread_setname_np are GNU extensions: declared only with _GNU_SOURCE, which Swift's Glibc module
// is not built with, so they are wrapped here.
#define _GNU_SOURCE
#include "cepoll.h"
#ifdef __linux__
#include <pthread.h>

int cepoll_accept4(int descriptor, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(descriptor, address, length, flags);
}

int cepoll_name_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
#endif
