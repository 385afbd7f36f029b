/*
 * floor.c - the raw floor of the marketcast fan-out benchmark: the least a WebSocket server can
 * do to deliver the same messages as the other peers.
 *
 * Design: one thread, one epoll loop, libc only (SHA-1 and base64 for the handshake are below).
 * It accepts connections, reads the HTTP upgrade request, answers 101 with the right
 * Sec-WebSocket-Accept and keeps the socket. Every --interval seconds (timerfd), if at least one
 * client is upgraded, it builds ONE text frame (RFC 6455 server frame: FIN+text, 7/16/64-bit
 * length, unmasked) holding '{"seq":N,"ts":MS,' + the snapshot file minus its '{', and writes it
 * to every client with one writev(header, payload) - nothing else per client.
 * The snapshot is read once; each tick only writes the ~40-byte seq/ts prefix in front of a
 * buffer that already holds the body, so the per-tick cost is the writes themselves.
 *
 * Slow clients: sockets are non-blocking. A partial write keeps that socket's offset into its
 * frame, and the rest goes out when epoll reports EPOLLOUT. A tick that finds the socket still
 * busy parks the new frame as the socket's single "next" frame (a newer tick replaces it: drop
 * oldest, queue of 1), sent right after the current one. Frames are shared and reference-counted
 * so no payload is ever copied per client. A socket that errors is closed.
 *
 * Contract (same as seed_fastapi.py and node_ws.js): path /ws/market (others get 404); seq from
 * 1, +1 per broadcast; ts = CLOCK_REALTIME in ms when the tick's frame is built; nothing else is
 * sent: no pings (keepalive off), no close frames, no reply to anything a client sends (it is
 * read and discarded; EOF closes). No connection limit; RLIMIT_NOFILE is raised to the hard
 * limit at start; listen backlog SOMAXCONN; TCP_NODELAY on accepted sockets (as ws and Python's
 * asyncio set by default). Prints "READY <port>" once listening; SIGTERM/SIGINT
 * close everything and exit 0 (a one-line summary goes to stderr).
 * The payload is the snapshot file's own bytes, so its size equals the file's plus the prefix.
 *
 * Build and run:
 *   bench/peers/build.sh [OUT]   (gcc -O2 -Wall -Wextra -o OUT floor.c; OUT defaults to
 *                                 bench/peers/floor; plain `gcc -O2 -o floor floor.c` works too)
 *   bench/peers/floor --port 8001 --snapshot /work/shared/fixtures/snapshot-small.json --interval 1.0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WS_PATH "/ws/market"
#define MAX_REQUEST 8192   /* an upgrade request larger than this is refused */
#define PREFIX_ROOM 64     /* room in front of the body for '{"seq":N,"ts":MS,' (<= 55 bytes) */
#define MAX_EVENTS 256

/* ---------------------------------------------------------------- SHA-1 (FIPS 180-1) ---- */

typedef struct { uint32_t h[5]; uint64_t len; uint8_t buf[64]; size_t n; } sha1_ctx;

static uint32_t rol32(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
    uint32_t w[80], a = c->h[0], b = c->h[1], d = c->h[3], e = c->h[4], cc = c->h[2];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)      { f = (b & cc) | (~b & d);          k = 0x5A827999; }
        else if (i < 40) { f = b ^ cc ^ d;                   k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
        else             { f = b ^ cc ^ d;                   k = 0xCA62C1D6; }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = rol32(b, 30); b = a; a = t;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1_init(sha1_ctx *c) {
    static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->n = 0;
}

static void sha1_update(sha1_ctx *c, const void *data, size_t len) {
    const uint8_t *p = data;
    c->len += len;
    while (len--) {
        c->buf[c->n++] = *p++;
        if (c->n == 64) { sha1_block(c, c->buf); c->n = 0; }
    }
}

static void sha1_final(sha1_ctx *c, uint8_t out[20]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenbe[8];
    sha1_update(c, &pad, 1);
    while (c->n != 56) sha1_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenbe[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(c, lenbe, 8);
    for (int i = 0; i < 20; i++) out[i] = (uint8_t)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---------------------------------------------------------------- base64 (RFC 4648) ----- */

static size_t base64_encode(const uint8_t *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (RFC 6455 section 4.2.2). */
static void websocket_accept(const char *key, size_t key_len, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t digest[20];
    sha1_ctx c;
    sha1_init(&c);
    sha1_update(&c, key, key_len);
    sha1_update(&c, guid, sizeof guid - 1);
    sha1_final(&c, digest);
    base64_encode(digest, 20, out);
}

/* ---------------------------------------------------------------- frames ---------------- */

/* One tick's message, shared by every client that still has it to send. */
typedef struct frame {
    int refs;
    uint8_t header[10];
    size_t header_len;
    char *buf;            /* PREFIX_ROOM bytes of room, then the snapshot body after its '{' */
    const char *payload;  /* points into buf: prefix + body */
    size_t payload_len;
    struct frame *next_free;
} frame;

static char *g_body;        /* snapshot file minus its leading '{' */
static size_t g_body_len;
static frame *g_free_frames;
static unsigned long long g_frames_allocated;

static frame *frame_get(void) {
    frame *f = g_free_frames;
    if (f) {
        g_free_frames = f->next_free;
    } else {
        /* Only when every existing frame is still owed to some slow client. */
        f = calloc(1, sizeof *f);
        g_frames_allocated++;
        if (!f || !(f->buf = malloc(PREFIX_ROOM + g_body_len))) { perror("malloc"); exit(1); }
        memcpy(f->buf + PREFIX_ROOM, g_body, g_body_len);
    }
    f->refs = 1;
    return f;
}

static void frame_unref(frame *f) {
    if (f && --f->refs == 0) {
        f->next_free = g_free_frames;
        g_free_frames = f;
    }
}

static void frame_stamp(frame *f, unsigned long long seq, long long ts_ms) {
    char prefix[PREFIX_ROOM];
    /* An empty snapshot object ("{}") must not leave a dangling comma. */
    const char *sep = (g_body_len > 0 && g_body[0] == '}') ? "" : ",";
    int n = snprintf(prefix, sizeof prefix, "{\"seq\":%llu,\"ts\":%lld%s", seq, ts_ms, sep);
    memcpy(f->buf + PREFIX_ROOM - n, prefix, (size_t)n);
    f->payload = f->buf + PREFIX_ROOM - n;
    f->payload_len = (size_t)n + g_body_len;

    uint64_t len = f->payload_len;
    f->header[0] = 0x81; /* FIN + text */
    if (len < 126) {
        f->header[1] = (uint8_t)len;
        f->header_len = 2;
    } else if (len <= 0xFFFF) {
        f->header[1] = 126;
        f->header[2] = (uint8_t)(len >> 8);
        f->header[3] = (uint8_t)len;
        f->header_len = 4;
    } else {
        f->header[1] = 127;
        for (int i = 0; i < 8; i++) f->header[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        f->header_len = 10;
    }
}

/* ---------------------------------------------------------------- clients --------------- */

typedef struct {
    int in_use;
    int open;            /* upgraded: receives ticks */
    int open_index;      /* position in g_open */
    int want_out;        /* EPOLLOUT registered */
    char *req;           /* upgrade request bytes, only until the handshake is done */
    size_t req_len;
    frame *cur;          /* frame being written */
    size_t off;          /* bytes of cur (header + payload) already written */
    frame *next;         /* newest frame that arrived while cur was still being written */
} client;

static client *g_clients;  /* indexed by fd */
static size_t g_max_fds;
static int *g_open;        /* fds of upgraded clients, dense */
static size_t g_open_count;
static int g_epfd;
static unsigned long long g_dropped, g_closed_on_error, g_partial;

static void set_events(int fd, client *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.fd = fd};
    epoll_ctl(g_epfd, EPOLL_CTL_MOD, fd, &ev);
    c->want_out = want_out;
}

static void client_close(int fd) {
    client *c = &g_clients[fd];
    if (c->open) {
        int last = g_open[--g_open_count];
        g_open[c->open_index] = last;
        g_clients[last].open_index = c->open_index;
    }
    frame_unref(c->cur);
    frame_unref(c->next);
    free(c->req);
    memset(c, 0, sizeof *c);
    close(fd); /* also removes fd from the epoll set */
}

/* Write as much of c->cur (then c->next) as the socket takes. Returns -1 if the socket was closed.
 * `once` limits it to a single writev: the tick path does exactly one per socket. */
static int client_flush(int fd, int once) {
    client *c = &g_clients[fd];
    while (c->cur) {
        frame *f = c->cur;
        struct iovec iov[2];
        int n = 0;
        if (c->off < f->header_len) {
            iov[n++] = (struct iovec){f->header + c->off, f->header_len - c->off};
            iov[n++] = (struct iovec){(void *)f->payload, f->payload_len};
        } else {
            size_t po = c->off - f->header_len;
            iov[n++] = (struct iovec){(void *)(f->payload + po), f->payload_len - po};
        }
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            g_closed_on_error++;
            client_close(fd);
            return -1;
        }
        c->off += (size_t)w;
        if (c->off == f->header_len + f->payload_len) {
            frame_unref(f);
            c->cur = c->next;
            c->next = NULL;
            c->off = 0;
        } else {
            g_partial++;
        }
        if (once) break;
    }
    set_events(fd, c, c->cur != NULL);
    return 0;
}

static void broadcast(frame *f) {
    /* Iterate backwards: a close swaps the last entry into the closed slot. */
    for (size_t i = g_open_count; i-- > 0;) {
        int fd = g_open[i];
        client *c = &g_clients[fd];
        f->refs++;
        if (c->cur) {                /* still writing an older frame: park this one */
            if (c->next) g_dropped++;
            frame_unref(c->next);
            c->next = f;
        } else {
            c->cur = f;
            c->off = 0;
            client_flush(fd, 1);
        }
    }
}

static void reply_and_close(int fd, const char *status) {
    char resp[128];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
    (void)!write(fd, resp, (size_t)n);
    client_close(fd);
}

/* Value of header `name` in an HTTP request (case-insensitive name), or NULL. */
static const char *find_header(const char *req, const char *name, size_t *len) {
    size_t nlen = strlen(name);
    const char *p = strstr(req, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol) return NULL;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
            *len = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

static void handshake(int fd) {
    client *c = &g_clients[fd];
    const char *req = c->req;
    /* Request line: GET /ws/market[?query] HTTP/1.1 */
    size_t plen = strlen(WS_PATH);
    if (strncmp(req, "GET ", 4) != 0) { reply_and_close(fd, "405 Method Not Allowed"); return; }
    if (strncmp(req + 4, WS_PATH, plen) != 0 || (req[4 + plen] != ' ' && req[4 + plen] != '?')) {
        reply_and_close(fd, "404 Not Found");
        return;
    }
    size_t key_len;
    const char *key = find_header(req, "Sec-WebSocket-Key", &key_len);
    if (!key || key_len == 0 || key_len > 64) { reply_and_close(fd, "400 Bad Request"); return; }

    char accept[29], resp[160];
    websocket_accept(key, key_len, accept);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    /* A fresh socket's send buffer is empty, so this small write completes or the peer is gone. */
    if (write(fd, resp, (size_t)n) != n) { g_closed_on_error++; client_close(fd); return; }

    free(c->req);
    c->req = NULL;
    c->req_len = 0;
    c->open = 1;
    c->open_index = (int)g_open_count;
    g_open[g_open_count++] = fd;
}

static void client_readable(int fd) {
    client *c = &g_clients[fd];
    static char sink[65536];
    if (c->open) {                      /* frames from clients are read and discarded */
        ssize_t r = read(fd, sink, sizeof sink);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) client_close(fd);
        return;
    }
    ssize_t r = read(fd, c->req + c->req_len, MAX_REQUEST - 1 - c->req_len);
    if (r == 0) { client_close(fd); return; }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) client_close(fd);
        return;
    }
    c->req_len += (size_t)r;
    c->req[c->req_len] = '\0';
    if (strstr(c->req, "\r\n\r\n")) handshake(fd);   /* bytes after the request are ignored */
    else if (c->req_len >= MAX_REQUEST - 1) reply_and_close(fd, "431 Request Header Fields Too Large");
}

/* ---------------------------------------------------------------- main ------------------ */

static int g_spare_fd = -1; /* closed to make room for accept+close when out of descriptors */

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: shed one pending connection so level-triggered epoll
                 * does not spin on the listening socket. */
                fprintf(stderr, "floor: out of file descriptors at %zu clients\n", g_open_count);
                close(g_spare_fd);
                fd = accept(lfd, NULL, NULL);
                if (fd >= 0) close(fd);
                g_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN */
        }
        if ((size_t)fd >= g_max_fds) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client *c = &g_clients[fd];
        memset(c, 0, sizeof *c);
        c->in_use = 1;
        c->req = malloc(MAX_REQUEST);
        if (!c->req) { close(fd); continue; }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { client_close(fd); continue; }
    }
}

static char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) < 0) { fclose(fp); return NULL; }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, fp) : 0;
    fclose(fp);
    if (!buf || n != (size_t)st.st_size) { free(buf); return NULL; }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s --snapshot FILE [--port 8001] [--host 127.0.0.1] [--interval 1.0]\n", argv0);
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *snapshot_path = NULL;
    int port = 8001;
    double interval = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(argv[0]);
        if (!v) usage(argv[0]);
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--snapshot")) snapshot_path = v;
        else if (!strcmp(a, "--interval")) interval = strtod(v, NULL);
        else usage(argv[0]);
        i++;
    }
    if (!snapshot_path || port < 0 || port > 65535 || !(interval > 0)) usage(argv[0]);

    /* Snapshot: trim whitespace, keep everything after the opening '{'. */
    size_t file_len;
    char *file = read_file(snapshot_path, &file_len);
    if (!file) { perror(snapshot_path); return 1; }
    char *s = file, *e = file + file_len;
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
    if (e - s < 2 || *s != '{' || e[-1] != '}') { fprintf(stderr, "%s: not a JSON object\n", snapshot_path); return 1; }
    g_body = s + 1;
    g_body_len = (size_t)(e - s - 1);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    g_max_fds = (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20)) ? (1u << 20) : (size_t)rl.rlim_cur;
    g_clients = calloc(g_max_fds, sizeof *g_clients);
    g_open = calloc(g_max_fds, sizeof *g_open);
    if (!g_clients || !g_open) { perror("calloc"); return 1; }

    signal(SIGPIPE, SIG_IGN); /* writev to a reset socket must return EPIPE, not kill us */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "bad --host %s (IPv4 only)\n", host); return 2; }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, SOMAXCONN) < 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    long long ns = (long long)(interval * 1e9);
    struct itimerspec its = {.it_interval = {ns / 1000000000LL, ns % 1000000000LL}};
    its.it_value = its.it_interval;
    timerfd_settime(tfd, 0, &its, NULL);

    g_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = lfd; epoll_ctl(g_epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = tfd; epoll_ctl(g_epfd, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.fd = sfd; epoll_ctl(g_epfd, EPOLL_CTL_ADD, sfd, &ev);

    printf("READY %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    unsigned long long seq = 0, late_ticks = 0;
    size_t peak = 0;
    struct epoll_event events[MAX_EVENTS];
    for (int running = 1; running;) {
        int n = epoll_wait(g_epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t evs = events[i].events;
            if (fd == lfd) {
                accept_all(lfd);
            } else if (fd == tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) != sizeof expirations) continue;
                if (expirations > 1) late_ticks += expirations - 1;
                if (g_open_count == 0) continue;
                if (g_open_count > peak) peak = g_open_count;
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                frame *f = frame_get();
                frame_stamp(f, ++seq, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
                broadcast(f);
                frame_unref(f);
            } else if (fd == sfd) {
                running = 0;
            } else if (g_clients[fd].in_use) {
                if (evs & (EPOLLERR | EPOLLHUP)) { client_close(fd); continue; }
                if (evs & EPOLLOUT) {
                    if (client_flush(fd, 0) < 0) continue;
                }
                if (evs & EPOLLIN) client_readable(fd);
            }
        }
    }

    for (size_t fd = 0; fd < g_max_fds; fd++)
        if (g_clients[fd].in_use) client_close((int)fd);
    fprintf(stderr, "floor: %llu broadcasts, peak %zu clients, %llu partial writes, %llu frames dropped "
                    "for slow clients, %llu closed on error, %llu late timer ticks, %llu frame buffers\n",
            seq, peak, g_partial, g_dropped, g_closed_on_error, late_ticks, g_frames_allocated);
    close(lfd);
    close(tfd);
    close(sfd);
    close(g_epfd);
    free(file);
    return 0;
}
