#define _GNU_SOURCE 1
#include "clinux.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>

_Static_assert(sizeof(clinux_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");

int clinux_errno(void) { return errno; }

int clinux_tun_set_iff(int fd, const char *name, short flags, char *name_out) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = flags;
    if (name != NULL) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) return -errno;
    if (name_out != NULL) {
        memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
        name_out[IFNAMSIZ - 1] = 0;
    }
    return 0;
}

int clinux_tun_get_flags(int fd) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -errno;
    return ifr.ifr_flags & 0xffff;
}

static int control_socket(void) { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

static int if_request(const char *name, unsigned long request, struct ifreq *ifr) {
    int s = control_socket();
    if (s < 0) return -errno;
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    int rc = ioctl(s, request, ifr);
    int saved = errno;
    close(s);
    return rc < 0 ? -saved : 0;
}

int clinux_if_get_mtu(const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    int rc = if_request(name, SIOCGIFMTU, &ifr);
    return rc < 0 ? rc : ifr.ifr_mtu;
}

int clinux_if_set_mtu(const char *name, int mtu) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_mtu = mtu;
    return if_request(name, SIOCSIFMTU, &ifr);
}

int clinux_if_set_up(const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    int rc = if_request(name, SIOCGIFFLAGS, &ifr);
    if (rc < 0) return rc;
    if ((ifr.ifr_flags & IFF_UP) != 0) return 0;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return if_request(name, SIOCSIFFLAGS, &ifr);
}

unsigned clinux_if_index(const char *name) { return if_nametoindex(name); }

int clinux_recvmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)vec, vlen, flags, NULL);
}

int clinux_sendmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vec, vlen, flags);
}

int clinux_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void clinux_set_thread_name(const char *name) {
    char short_name[16];
    strncpy(short_name, name, sizeof(short_name) - 1);
    short_name[sizeof(short_name) - 1] = 0;
    pthread_setname_np(pthread_self(), short_name);
}

int clinux_termination_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -EINVAL;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int clinux_read_signal(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof(info));
    if (n == (ssize_t)sizeof(info)) return (int)info.ssi_signo;
    if (n < 0 && errno != EAGAIN) return -errno;
    return 0;
}
