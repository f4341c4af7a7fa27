// The Linux calls the pooler's own event loop needs (epoll, eventfd, accept4) that Swift's Glibc module leaves out
// (accept4 and pthread_setname_np are wrapped in shim.c).
#ifndef PGCAT_CEPOLL_H
#define PGCAT_CEPOLL_H
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>

int cepoll_accept4(int descriptor, struct sockaddr *address, socklen_t *length, int flags);
/// Names the calling thread (at most 15 bytes are kept).
int cepoll_name_thread(const char *name);
#endif
#endif
