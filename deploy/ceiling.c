// The copy-only ceiling of a TUN + UDP tunnel, for deploy/bench.py's `ceiling` row. Not a tunnel
// anyone should run: it does only what every user-space TUN-over-UDP tunnel must do per byte (read
// the TUN device, send UDP, receive UDP, write the TUN device), with the kernel's offloads on both
// devices and sockets, and nothing else: no per-segment headers, checksums, validation or policy.
// Each TUN read (a virtio-net header and a packet of up to 64 KiB, TSO included) leaves as one
// UDP GSO send, prefixed by a mark and its length; the far end receives with UDP GRO and writes each frame
// back, header and all, so the kernel there finishes the offload. What it reaches bounds what
// udptun can reach on the same host.
//
//   ceiling TUN-NAME LOCAL-IPv4:PORT PEER-IPv4:PORT
//
// Two threads, blocking I/O: TUN → UDP and UDP → TUN. Runs until killed.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/udp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

enum {
    segment_bytes = 1472,                 // a 1,500-byte underlay minus IPv4 and UDP headers
    frame_limit = 10 + 65535,             // virtio-net header and the largest TSO packet
    datagram_limit = 40 * segment_bytes,  // under UDP's 65,507-byte payload limit
    receive_bytes = 4 << 20,              // partial frames wait here; moved to the front rarely
};

static const uint32_t frame_mark = 0x6365696c;  // "ceil": a frame starts here
static int tun, udp;
static struct sockaddr_in peer;

static void die(const char *what) {
    fprintf(stderr, "ceiling: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_in parse(const char *text) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || colon - text >= (long)sizeof host) { fprintf(stderr, "ceiling: bad address %s\n", text); exit(2); }
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) { fprintf(stderr, "ceiling: bad address %s\n", text); exit(2); }
    return address;
}

static void send_part(const uint8_t *bytes, size_t length) {
    char control[CMSG_SPACE(sizeof(uint16_t))] = {0};
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
    struct msghdr message = {.msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = &iov, .msg_iovlen = 1};
    if (length > segment_bytes) {
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = IPPROTO_UDP;
        header->cmsg_type = UDP_SEGMENT;
        header->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = segment_bytes;
        memcpy(CMSG_DATA(header), &size, sizeof size);
    }
    while (sendmsg(udp, &message, 0) < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS || errno == ECONNREFUSED) return;  // dropped, as a tunnel would
        die("sendmsg");
    }
}

static void *tun_to_udp(void *unused) {
    (void)unused;
    static uint8_t frame[8 + frame_limit];
    memcpy(frame, &frame_mark, 4);
    for (;;) {
        ssize_t length = read(tun, frame + 8, frame_limit);
        if (length < 0) { if (errno == EINTR) continue; die("read TUN"); }
        uint32_t prefix = (uint32_t)length;
        memcpy(frame + 4, &prefix, 4);
        size_t total = 8 + (size_t)length, offset = 0;
        // A frame over one datagram's limit leaves in two sends; the first is whole segments.
        while (offset < total) {
            size_t part = total - offset > datagram_limit ? datagram_limit : total - offset;
            send_part(frame + offset, part);
            offset += part;
        }
    }
    return NULL;
}

static void *udp_to_tun(void *unused) {
    (void)unused;
    uint8_t *buffer = malloc(receive_bytes);
    if (!buffer) die("malloc");
    size_t start = 0, end = 0;
    int in_sync = 0;  // after a lost datagram: skip datagrams until one starts a frame
    for (;;) {
        if (receive_bytes - end < 65536) {  // move the partial frame to the front
            memmove(buffer, buffer + start, end - start);
            end -= start;
            start = 0;
        }
        ssize_t length = recv(udp, buffer + end, receive_bytes - end, 0);
        if (length < 0) { if (errno == EINTR) continue; die("recv"); }
        if (!in_sync) {
            uint32_t mark = 0;
            if (length >= 4) memcpy(&mark, buffer + end, 4);
            if (mark != frame_mark) continue;
            in_sync = 1;
        }
        end += (size_t)length;
        while (end - start >= 8) {
            uint32_t mark, frame;
            memcpy(&mark, buffer + start, 4);
            memcpy(&frame, buffer + start + 4, 4);
            if (mark != frame_mark || frame > frame_limit) { start = end = 0; in_sync = 0; break; }
            if (end - start < 8 + (size_t)frame) break;
            if (write(tun, buffer + start + 8, frame) < 0 && errno != EINVAL && errno != EIO) die("write TUN");
            start += 8 + frame;
        }
        if (start == end) start = end = 0;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: ceiling TUN-NAME LOCAL-IPv4:PORT PEER-IPv4:PORT\n"); return 2; }
    struct sockaddr_in local = parse(argv[2]);
    peer = parse(argv[3]);

    if ((tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0) die("open /dev/net/tun");
    struct ifreq request = {.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR};
    snprintf(request.ifr_name, IFNAMSIZ, "%s", argv[1]);
    if (ioctl(tun, TUNSETIFF, &request) < 0) die("TUNSETIFF");
    int header_bytes = 10;
    if (ioctl(tun, TUNSETVNETHDRSZ, &header_bytes) < 0) die("TUNSETVNETHDRSZ");
    if (ioctl(tun, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) die("TUNSETOFFLOAD");

    if ((udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) die("socket");
    int on = 1, bytes = 4 << 20;
    if (setsockopt(udp, IPPROTO_UDP, UDP_GRO, &on, sizeof on) < 0) die("UDP_GRO");
    setsockopt(udp, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    setsockopt(udp, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes);
    if (bind(udp, (struct sockaddr *)&local, sizeof local) < 0) die("bind");

    pthread_t thread;
    if ((errno = pthread_create(&thread, NULL, udp_to_tun, NULL))) die("pthread_create");
    tun_to_udp(NULL);
    return 0;
}
