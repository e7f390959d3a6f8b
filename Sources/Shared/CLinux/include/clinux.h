// The kernel-facing layer: constants and thin wrappers for calls Swift cannot import as they are
// (variadic ioctl, GNU-only mmsghdr). Everything above this header is Swift.
#ifndef UDPTUN_CLINUX_H
#define UDPTUN_CLINUX_H

// No _GNU_SOURCE here: the header must see libc exactly as Swift's Glibc module does.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <stdint.h>
#include <pthread.h>

// Kernel constants, defined in clinux.c from the kernel's and libc's own headers (<linux/if_tun.h>,
// <linux/udp.h>, <linux/virtio_net.h>, ...), never copied by hand. This header cannot include the
// kernel's <linux/if.h> (it clashes with glibc's <net/if.h>, which Swift's Glibc module imports).
extern const int CLINUX_IFNAMSIZ;
extern const short CLINUX_IFF_TUN;
extern const short CLINUX_IFF_NO_PI;
extern const short CLINUX_IFF_VNET_HDR;
/// One device, several file descriptors (queues); the kernel spreads flows across them.
extern const short CLINUX_IFF_MULTI_QUEUE;
/// TUNSETOFFLOAD flags: checksum offload and TCP segmentation offload for IPv4/IPv6.
extern const unsigned CLINUX_TUN_F_CSUM;
extern const unsigned CLINUX_TUN_F_TSO4;
extern const unsigned CLINUX_TUN_F_TSO6;
/// UDP segmentation offload (Linux 6.2 and later).
extern const unsigned CLINUX_TUN_F_USO4;
extern const unsigned CLINUX_TUN_F_USO6;
/// sizeof(struct virtio_net_hdr): the header that precedes every packet on an IFF_VNET_HDR device.
/// WireFormat's VirtioNetHeader.length mirrors it; clinux.c asserts the two agree.
extern const int CLINUX_VIRTIO_NET_HDR_LEN;
extern const int CLINUX_IP_MTU;
extern const int CLINUX_IPV6_MTU;
/// UDP socket options (<linux/udp.h>).
extern const int CLINUX_UDP_SEGMENT;
extern const int CLINUX_UDP_GRO;

/// Attaches `fd` (an open /dev/net/tun) to the device `name` (empty: the kernel picks one) with `flags`.
/// Writes the resulting name to `name_out` (CLINUX_IFNAMSIZ bytes). Returns 0 or -errno.
int clinux_tun_set_iff(int fd, const char *name, short flags, char *name_out);
/// Returns the device's TUN flags (TUNGETIFF) or -errno.
int clinux_tun_get_flags(int fd);
/// TUNSETVNETHDRSZ then TUNSETOFFLOAD. Returns 0 or -errno.
int clinux_tun_set_offload(int fd, unsigned flags);
/// Writes `header` then `packet` in one writev. Returns bytes written or -errno.
long clinux_writev2(int fd, const void *header, unsigned long header_len, const void *packet, unsigned long packet_len);

/// Bytes of control buffer one message needs: UDP_GRO/UDP_SEGMENT, SO_RXQ_OVFL and the packet info
/// (IP_PKTINFO, IPV6_PKTINFO) of either family.
unsigned long clinux_udp_control_space(void);
/// Fills `control` with the cmsgs of a send and attaches them to `msg` (no control when neither is
/// asked for): UDP_SEGMENT when `segment_size` > 0; the source address when `local_family` is AF_INET
/// (IP_PKTINFO, 4 bytes at `local_address`) or AF_INET6 (IPV6_PKTINFO, 16 bytes).
void clinux_msg_set_send_control(struct msghdr *msg, void *control, unsigned short segment_size,
                                 int local_family, const unsigned char *local_address);
/// Reads a received message's control messages in one pass: returns its UDP_GRO segment size (0 when
/// it is a single datagram), stores the SO_RXQ_OVFL drop count in `drop_count` (-1 when absent) and
/// the address the datagram was sent to in `local_family` (0 when absent; AF_INET: 4 bytes,
/// AF_INET6: 16 bytes of `local_address`, an IPv4-mapped one unmapped to AF_INET).
int clinux_msg_udp_control(const struct msghdr *msg, long long *drop_count, int *local_family, unsigned char *local_address);
/// Asks for the destination address of each received datagram (IP_PKTINFO; on AF_INET6 sockets also
/// IPV6_RECVPKTINFO). Returns 0 or -errno.
int clinux_enable_packet_info(int fd, int family);
/// sendmsg of one datagram to `address`, from `local_address` as in clinux_msg_set_send_control
/// (`local_family` 0: the kernel's choice, no control message).
/// Returns bytes sent or -errno.
long clinux_send_from(int fd, const void *bytes, unsigned long count, const struct sockaddr *address, unsigned address_length,
                      int local_family, const unsigned char *local_address);

/// Interface MTU: returns the MTU or -errno.
int clinux_if_get_mtu(const char *name);
int clinux_if_set_mtu(const char *name, int mtu);
/// Sets IFF_UP (and IFF_RUNNING) on the interface. Returns 0 or -errno.
int clinux_if_set_up(const char *name);
/// Returns 1 when the kernel reports the interface running (IFF_RUNNING: up, carrier on, and its
/// link-watch work done), 0 when not, or -errno.
int clinux_if_is_running(const char *name);
/// Returns the interface index or 0 when there is none.
unsigned clinux_if_index(const char *name);
/// Moves the calling thread into the network namespace at `path` (/run/netns/NAME). Returns 0 or -errno.
int clinux_join_network_namespace(const char *path);

/// A non-blocking NETLINK_ROUTE socket subscribed to IPv4 and IPv6 address and route changes, or -errno.
int clinux_address_watch_open(void);
/// Reads every pending notification (into a stack buffer: nothing is allocated) and returns how
/// many there were, or -errno (ENOBUFS: some were lost, so the addresses must be read again).
int clinux_address_watch_drain(int fd);

/// The local routing table as the kernel keeps it (what it delivers to this host): one RTM_GETROUTE
/// dump of `family` (AF_INET or AF_INET6) over a new NETLINK_ROUTE socket. Writes the answer's
/// netlink messages, every part up to and including NLMSG_DONE, to `buffer` and returns their
/// length; -ENOSPC when `capacity` is too small (ask again with more), or -errno (an NLMSG_ERROR
/// answer's error included). KernelIO's LocalRoutes parses the bytes.
long clinux_route_dump(int family, void *buffer, unsigned long capacity);
/// Netlink ABI values and layout the parser needs (<linux/netlink.h>, <linux/rtnetlink.h>).
extern const int CLINUX_NLMSG_HDRLEN;
extern const int CLINUX_NLMSG_DONE;
extern const int CLINUX_NLMSG_ERROR;
extern const int CLINUX_RTM_NEWROUTE;
/// sizeof(struct rtmsg) and the offsets of its fields.
extern const int CLINUX_RTMSG_LEN;
extern const int CLINUX_RTMSG_FAMILY;
extern const int CLINUX_RTMSG_DST_LEN;
extern const int CLINUX_RTMSG_TABLE;
extern const int CLINUX_RTMSG_TYPE;
extern const int CLINUX_RTA_DST;
extern const int CLINUX_RTA_TABLE;
extern const int CLINUX_RT_TABLE_LOCAL;
extern const int CLINUX_RTN_LOCAL;
extern const int CLINUX_RTN_BROADCAST;
extern const int CLINUX_RTN_ANYCAST;

/// Batches of datagrams: mirrors struct mmsghdr so Swift can allocate arrays of it.
typedef struct clinux_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} clinux_mmsghdr;

int clinux_recvmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags);
int clinux_sendmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags);

/// A non-blocking, close-on-exec eventfd (for waking threads blocked in poll). Returns fd or -errno.
int clinux_eventfd(void);

/* accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC (a GNU extension Swift does not see): the new descriptor, or -errno. */
int clinux_accept_stream(int fd);
/// Names `thread` (visible in top -H and /proc); truncated to 15 bytes.
void clinux_set_thread_name(pthread_t thread, const char *name);
/// Restricts a thread to one CPU. Returns 0 or -errno.
int clinux_pin_thread(pthread_t thread, int cpu);
/// Writes the CPUs the calling thread may run on into `cpus` (at most `capacity`, ascending) and
/// returns how many there are, or -errno.
int clinux_allowed_cpus(int *cpus, int capacity);
/// The CPU the calling thread is running on (sched_getcpu), or -errno.
int clinux_current_cpu(void);

/// Blocks SIGINT and SIGTERM in the calling thread (threads created later inherit the mask) and
/// returns a non-blocking signalfd that becomes readable when one is pending, or -errno.
int clinux_termination_signalfd(void);
/// Reads one pending signal from that descriptor: its number, 0 if none, or -errno.
int clinux_read_signal(int fd);

/// errno is a thread-local macro; read it through a function.
int clinux_errno(void);

#endif
