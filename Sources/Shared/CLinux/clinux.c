#define _GNU_SOURCE 1
#include "clinux.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <netinet/udp.h>
#include <linux/virtio_net.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>

_Static_assert(sizeof(clinux_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");

const int CLINUX_IFNAMSIZ = IFNAMSIZ;
const short CLINUX_IFF_TUN = IFF_TUN;
const short CLINUX_IFF_NO_PI = IFF_NO_PI;
const short CLINUX_IFF_VNET_HDR = IFF_VNET_HDR;
const short CLINUX_IFF_MULTI_QUEUE = IFF_MULTI_QUEUE;
const unsigned CLINUX_TUN_F_CSUM = TUN_F_CSUM;
const unsigned CLINUX_TUN_F_TSO4 = TUN_F_TSO4;
const unsigned CLINUX_TUN_F_TSO6 = TUN_F_TSO6;
#ifdef TUN_F_USO4
const unsigned CLINUX_TUN_F_USO4 = TUN_F_USO4;
const unsigned CLINUX_TUN_F_USO6 = TUN_F_USO6;
#else
// Headers older than Linux 6.2 lack them; the values are the kernel ABI's, and a kernel that does
// not know them refuses TUNSETOFFLOAD with EINVAL, which TunDevice handles.
const unsigned CLINUX_TUN_F_USO4 = 0x20;
const unsigned CLINUX_TUN_F_USO6 = 0x40;
#endif
const int CLINUX_VIRTIO_NET_HDR_LEN = sizeof(struct virtio_net_hdr);
const int CLINUX_IP_MTU = IP_MTU;
const int CLINUX_IPV6_MTU = IPV6_MTU;
const int CLINUX_UDP_SEGMENT = UDP_SEGMENT;
const int CLINUX_UDP_GRO = UDP_GRO;

// WireFormat's VirtioNetHeader mirrors struct virtio_net_hdr in Swift (it cannot import this module):
// these are the values it uses.
_Static_assert(sizeof(struct virtio_net_hdr) == 10, "VirtioNetHeader.length");
_Static_assert(VIRTIO_NET_HDR_F_NEEDS_CSUM == 1, "VirtioNetHeader.needsChecksum");
_Static_assert(VIRTIO_NET_HDR_GSO_NONE == 0 && VIRTIO_NET_HDR_GSO_TCPV4 == 1 && VIRTIO_NET_HDR_GSO_UDP == 3
               && VIRTIO_NET_HDR_GSO_TCPV6 == 4 && VIRTIO_NET_HDR_GSO_ECN == 0x80, "VirtioNetHeader.GSOType");
#ifdef VIRTIO_NET_HDR_GSO_UDP_L4
_Static_assert(VIRTIO_NET_HDR_GSO_UDP_L4 == 5, "VirtioNetHeader.GSOType.udpL4");
#endif

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

int clinux_if_is_running(const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    int rc = if_request(name, SIOCGIFFLAGS, &ifr);
    if (rc < 0) return rc;
    return (ifr.ifr_flags & IFF_RUNNING) != 0;
}

unsigned clinux_if_index(const char *name) { return if_nametoindex(name); }

int clinux_join_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    return rc < 0 ? -saved : 0;
}

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

int clinux_accept_stream(int fd) {
    int accepted = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return accepted < 0 ? -errno : accepted;
}

void clinux_set_thread_name(pthread_t thread, const char *name) {
    char short_name[16];
    strncpy(short_name, name, sizeof(short_name) - 1);
    short_name[sizeof(short_name) - 1] = 0;
    pthread_setname_np(thread, short_name);
}

int clinux_pin_thread(pthread_t thread, int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return -EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(thread, sizeof(set), &set);
}

int clinux_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

int clinux_current_cpu(void) {
    int cpu = sched_getcpu();
    return cpu >= 0 ? cpu : -errno;
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


int clinux_tun_set_offload(int fd, unsigned flags) {
    int size = CLINUX_VIRTIO_NET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) return -errno;
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) return -errno;
    return 0;
}

long clinux_writev2(int fd, const void *header, unsigned long header_len, const void *packet, unsigned long packet_len) {
    struct iovec iov[2] = {{(void *)header, header_len}, {(void *)packet, packet_len}};
    ssize_t n = writev(fd, iov, 2);
    return n < 0 ? -errno : (long)n;
}

// Room for a UDP_GRO (int) and an SO_RXQ_OVFL (uint32) message on every received datagram.
unsigned long clinux_udp_control_space(void) {
    return CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(struct in_pktinfo))
         + CMSG_SPACE(sizeof(struct in6_pktinfo));
}

static void put_cmsg(struct cmsghdr *cm, int level, int type, const void *data, size_t length) {
    cm->cmsg_level = level;
    cm->cmsg_type = type;
    cm->cmsg_len = CMSG_LEN(length);
    memcpy(CMSG_DATA(cm), data, length);
}

void clinux_msg_set_send_control(struct msghdr *msg, void *control, unsigned short segment_size,
                                 int local_family, const unsigned char *local_address) {
    size_t length = (segment_size > 0 ? CMSG_SPACE(sizeof(uint16_t)) : 0)
        + (local_family == AF_INET ? CMSG_SPACE(sizeof(struct in_pktinfo)) : 0)
        + (local_family == AF_INET6 ? CMSG_SPACE(sizeof(struct in6_pktinfo)) : 0);
    if (length == 0) {
        msg->msg_control = NULL;
        msg->msg_controllen = 0;
        return;
    }
    memset(control, 0, length);
    msg->msg_control = control;
    msg->msg_controllen = length;
    struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
    if (segment_size > 0) {
        put_cmsg(cm, IPPROTO_UDP, UDP_SEGMENT, &segment_size, sizeof(segment_size));
        cm = CMSG_NXTHDR(msg, cm);
    }
    if (local_family == AF_INET) {
        // ipi_spec_dst is the source to use; on an AF_INET6 socket the kernel takes it for an
        // IPv4-mapped destination too.
        struct in_pktinfo info;
        memset(&info, 0, sizeof(info));
        memcpy(&info.ipi_spec_dst, local_address, 4);
        put_cmsg(cm, IPPROTO_IP, IP_PKTINFO, &info, sizeof(info));
    } else if (local_family == AF_INET6) {
        struct in6_pktinfo info;
        memset(&info, 0, sizeof(info));
        memcpy(&info.ipi6_addr, local_address, 16);
        put_cmsg(cm, IPPROTO_IPV6, IPV6_PKTINFO, &info, sizeof(info));
    }
}

int clinux_msg_udp_control(const struct msghdr *msg, long long *drop_count, int *local_family, unsigned char *local_address) {
    int gro_size = 0;
    *drop_count = -1;
    *local_family = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm != NULL; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
        if (cm->cmsg_level == IPPROTO_UDP && cm->cmsg_type == UDP_GRO) {
            memcpy(&gro_size, CMSG_DATA(cm), sizeof(gro_size));
        } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
            uint32_t dropped = 0;
            memcpy(&dropped, CMSG_DATA(cm), sizeof(dropped));
            *drop_count = dropped;
        } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(cm), sizeof(info));
            *local_family = AF_INET;
            memcpy(local_address, &info.ipi_addr, 4);  // the header's destination
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO && *local_family == 0) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(cm), sizeof(info));
            if (IN6_IS_ADDR_V4MAPPED(&info.ipi6_addr)) {
                *local_family = AF_INET;
                memcpy(local_address, &info.ipi6_addr.s6_addr[12], 4);
            } else {
                *local_family = AF_INET6;
                memcpy(local_address, &info.ipi6_addr, 16);
            }
        }
    }
    return gro_size;
}

int clinux_enable_packet_info(int fd, int family) {
    int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0) return -errno;
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) != 0) return -errno;
    return 0;
}

long clinux_send_from(int fd, const void *bytes, unsigned long count, const struct sockaddr *address, unsigned address_length,
                      int local_family, const unsigned char *local_address) {
    union {
        char buffer[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } control;
    struct iovec iov = { .iov_base = (void *)bytes, .iov_len = count };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_name = (void *)address;
    msg.msg_namelen = address_length;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    clinux_msg_set_send_control(&msg, control.buffer, 0, local_family, local_address);
    long sent = sendmsg(fd, &msg, 0);
    return sent < 0 ? -errno : sent;
}

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

int clinux_address_watch_open(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -errno;
    struct sockaddr_nl local;
    memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    // Routes too: the local table (local, broadcast, anycast routes) is what the relay guards.
    local.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

int clinux_address_watch_drain(int fd) {
    char buffer[8192] __attribute__((aligned(4)));
    int messages = 0;
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) { messages++; continue; }
        if (n == 0) return messages;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return messages;
        // ENOBUFS: notifications were lost; the caller re-reads as if there had been some.
        return -errno;
    }
}

const int CLINUX_NLMSG_HDRLEN = NLMSG_HDRLEN;
const int CLINUX_NLMSG_DONE = NLMSG_DONE;
const int CLINUX_NLMSG_ERROR = NLMSG_ERROR;
const int CLINUX_RTM_NEWROUTE = RTM_NEWROUTE;
const int CLINUX_RTMSG_LEN = sizeof(struct rtmsg);
const int CLINUX_RTMSG_FAMILY = offsetof(struct rtmsg, rtm_family);
const int CLINUX_RTMSG_DST_LEN = offsetof(struct rtmsg, rtm_dst_len);
const int CLINUX_RTMSG_TABLE = offsetof(struct rtmsg, rtm_table);
const int CLINUX_RTMSG_TYPE = offsetof(struct rtmsg, rtm_type);
const int CLINUX_RTA_DST = RTA_DST;
const int CLINUX_RTA_TABLE = RTA_TABLE;
const int CLINUX_RT_TABLE_LOCAL = RT_TABLE_LOCAL;
const int CLINUX_RTN_LOCAL = RTN_LOCAL;
const int CLINUX_RTN_BROADCAST = RTN_BROADCAST;
const int CLINUX_RTN_ANYCAST = RTN_ANYCAST;

long clinux_route_dump(int family, void *buffer, unsigned long capacity) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -errno;
    struct {
        struct nlmsghdr header;
        struct rtmsg route;
    } request;
    memset(&request, 0, sizeof(request));
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    request.header.nlmsg_type = RTM_GETROUTE;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = 1;
    request.route.rtm_family = (unsigned char)family;
    // With strict checking (Linux 4.20+) the kernel dumps the local table alone, not a router's
    // whole main table; older kernels dump every table and the parser keeps the local one.
    request.route.rtm_table = RT_TABLE_LOCAL;
    int strict = 1;
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &strict, sizeof(strict));
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof(kernel));
    kernel.nl_family = AF_NETLINK;
    long result = 0;
    if (sendto(fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        result = -errno;
        goto done;
    }
    unsigned long used = 0;
    for (;;) {
        if (capacity - used < 32768) { result = -ENOSPC; goto done; }  // room for a whole part
        char *part = (char *)buffer + used;
        ssize_t n = recv(fd, part, capacity - used, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            result = -errno;
            goto done;
        }
        if (n == 0) { result = -EIO; goto done; }
        int remaining = (int)n;
        for (struct nlmsghdr *message = (struct nlmsghdr *)part; NLMSG_OK(message, remaining);
             message = NLMSG_NEXT(message, remaining)) {
            if (message->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *error = NLMSG_DATA(message);
                result = message->nlmsg_len >= NLMSG_LENGTH(sizeof(*error)) && error->error < 0 ? error->error : -EIO;
                goto done;
            }
            if (message->nlmsg_type == NLMSG_DONE) {
                result = (long)(used + (unsigned long)n);
                goto done;
            }
        }
        used += (unsigned long)n;
    }
done:
    close(fd);
    return result;
}
