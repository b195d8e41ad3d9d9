/* wsload: single-threaded epoll WebSocket load client for `python -m bench`.
 *
 * usage: wsload MODE PORT TOKENS_FILE EXPECT_PER_CONN TIMEOUT_S SLEEP_US [PROTO]
 *   PORT      one port, or several separated by commas (P0,P1,...): connection k
 *             goes to port k % count (one user per connection, so each user is
 *             connected to exactly one server: the Redis mode's two gateway nodes)
 *   MODE      stream (count events), idle (hold connections), e2e (send one
 *             user_message per connection on GO, wait for its terminal event)
 *   TOKENS    one "user token" per line; one connection per line
 *   PROTO     ws (default: plain WebSocket on /ws) or sio (Socket.IO v5 over
 *             Engine.IO v4, WebSocket transport, on /socket.io/): after the
 *             upgrade the server sends the open packet `0{...}`, the client
 *             connects to the default namespace with `40`, the connection counts
 *             as open when the server answers `40{...}`; events arrive as
 *             `42["ev",{envelope}]`; pings `2` are answered with `3`.
 *
 * Protocol with the orchestrator: prints "READY <connected> <failed>" once every
 * handshake is done, then reads stdin: "GO" (e2e: send the messages) or EOF
 * (finish). Prints one JSON line of results and exits.
 *
 * Checks per connection: event offsets strictly +1 (lost / reordered), the user
 * marker in "text":"<user>|<seq>|<t_us>" is its own (misrouted). Latency is
 * receive time minus t_us (CLOCK_REALTIME, microseconds).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_UPGRADING, ST_SIO, ST_OPEN, ST_DEAD };
enum { M_STREAM, M_IDLE, M_E2E };

typedef struct {
    int fd, state, done;
    char *user;
    size_t ulen;
    char *token;
    char *buf;
    size_t len, cap;
    long long last_offset; /* -1: none yet */
    long long received;
    long long sent_us, first_event_us;
} Conn;

static Conn *conns;
static int nconns, mode, sio;
static int ports[16], nports;
static int inflight, opened, failed; /* handshakes in flight, opened, failed */
static long long expect_per_conn;
static long long lost, reordered, misrouted, coalesced, closed_early, received_total, done_conns;
static long long first_us, last_us;
static int32_t *lat;
static uint8_t *lat_port; /* the port index (node) each latency sample came through */
static size_t nlat, caplat = 8u << 20;
static long long *ttfe;
static size_t nttfe;
static double cpu_first = -1, cpu_last;

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static long long parse_int(const char *p, const char *end) {
    long long v = 0;
    int neg = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    return neg ? -v : v;
}

static void mark_dead(Conn *c, int epfd) {
    if (c->state == ST_DEAD) return;
    if (c->state == ST_OPEN && !c->done) closed_early++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = ST_DEAD;
}

static void send_frame(Conn *c, int opcode, const char *payload, size_t n) {
    /* client frames are masked; a zero mask key keeps the payload as is */
    unsigned char hdr[14];
    size_t h = 0;
    hdr[h++] = 0x80 | opcode;
    if (n < 126) hdr[h++] = 0x80 | n;
    else { hdr[h++] = 0x80 | 126; hdr[h++] = n >> 8; hdr[h++] = n & 0xff; }
    memset(hdr + h, 0, 4); h += 4;
    char out[1024];
    if (h + n > sizeof out) return;
    memcpy(out, hdr, h);
    memcpy(out + h, payload, n);
    if (send(c->fd, out, h + n, MSG_NOSIGNAL) < 0) { /* reported as closed_early later */ }
}

static void on_text(Conn *c, const char *p, size_t n, long long t) {
    if (sio) {
        if (n == 1 && p[0] == '2') { send_frame(c, 1, "3", 1); return; } /* ping -> pong */
        if (n >= 1 && p[0] == '0') { send_frame(c, 1, "40", 2); return; } /* open -> connect */
        if (n >= 2 && p[0] == '4' && p[1] == '0') {                      /* connected */
            if (c->state == ST_SIO) { c->state = ST_OPEN; opened++; inflight--; }
            return;
        }
        if (n < 2 || p[0] != '4' || p[1] != '2') return; /* only events from here on */
        p += 2;
        n -= 2;
    }
    const char *end = p + n;
    const char *o = memmem(p, n, "\"offset\":", 9);
    if (!o) return;
    if (mode == M_E2E) {
        /* events of a run (not the `connected` frame, which also has an offset) */
        if (memmem(p, n, "\"type\":\"connected\"", 18)) return;
        if (!c->first_event_us && c->sent_us) {
            c->first_event_us = t;
            ttfe[nttfe++] = t - c->sent_us;
        }
    } else if (!memmem(p, n, "\"text\":\"", 8)) {
        return;
    }
    long long off = parse_int(o + 9, end);
    long long count = 1;
    const char *cf = memmem(p, n, "\"coalesced_from\":", 17);
    long long from = cf ? parse_int(cf + 17, end) : off;
    if (cf) { coalesced += off - from; count = off - from + 1; }
    if (c->last_offset >= 0) {
        if (from <= c->last_offset) reordered++;
        else if (from != c->last_offset + 1) lost += from - c->last_offset - 1;
    }
    if (off > c->last_offset) c->last_offset = off;
    c->received += count;
    received_total += count;
    if (!first_us) { first_us = t; cpu_first = cpu_s(); }
    last_us = t;
    if (mode == M_E2E) {
        if (memmem(p, n, "\"type\":\"agent_completed\"", 24) || memmem(p, n, "\"type\":\"agent_error\"", 20)) {
            if (!c->done) { c->done = 1; done_conns++; }
        }
        return;
    }
    const char *m = memmem(p, n, "\"text\":\"", 8);
    m += 8;
    if ((size_t)(end - m) <= c->ulen || memcmp(m, c->user, c->ulen) != 0 || m[c->ulen] != '|') {
        misrouted++;
    } else {
        const char *bar = memchr(m + c->ulen + 1, '|', end - (m + c->ulen + 1));
        if (bar && nlat < caplat) {
            long long d = t - parse_int(bar + 1, end);
            lat_port[nlat] = (uint8_t)((c - conns) % nports);
            lat[nlat++] = d > INT32_MAX ? INT32_MAX : (int32_t)d;
        }
    }
    if (expect_per_conn > 0 && c->received >= expect_per_conn && !c->done) {
        c->done = 1;
        done_conns++;
    }
}

static void parse_frames(Conn *c, int epfd) {
    size_t pos = 0;
    long long t = now_us();
    while (c->len - pos >= 2) {
        unsigned char *b = (unsigned char *)c->buf + pos;
        int op = b[0] & 0x0f;
        size_t plen = b[1] & 0x7f, h = 2;
        if (plen == 126) {
            if (c->len - pos < 4) break;
            plen = ((size_t)b[2] << 8) | b[3];
            h = 4;
        } else if (plen == 127) {
            if (c->len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | b[2 + i];
            h = 10;
        }
        if (b[1] & 0x80) h += 4; /* servers never mask; tolerate it anyway */
        if (c->len - pos < h + plen) break;
        const char *payload = (const char *)b + h;
        if (op == 1 || op == 2) on_text(c, payload, plen, t);
        else if (op == 9) send_frame(c, 0xA, payload, plen < 125 ? plen : 0);
        else if (op == 8) { mark_dead(c, epfd); return; }
        pos += h + plen;
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
}

static void grow(Conn *c) {
    if (c->cap - c->len >= 4096) return;
    c->cap = c->cap ? c->cap * 2 : 16384;
    c->buf = realloc(c->buf, c->cap);
}

static int start_connect(Conn *c, int epfd) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { c->state = ST_DEAD; return -1; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(ports[(c - conns) % nports])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->state = ST_DEAD;
        return -1;
    }
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static int cmp32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp64(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: wsload stream|idle|e2e PORT TOKENS EXPECT TIMEOUT_S SLEEP_US [ws|sio]\n");
        return 2;
    }
    sio = argc == 8 && !strcmp(argv[7], "sio");
    mode = !strcmp(argv[1], "idle") ? M_IDLE : !strcmp(argv[1], "e2e") ? M_E2E : M_STREAM;
    for (const char *p = argv[2]; *p && nports < 16;) {
        ports[nports++] = atoi(p);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    expect_per_conn = atoll(argv[4]);
    double timeout_s = atof(argv[5]);
    long sleep_us = atol(argv[6]);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    FILE *f = fopen(argv[3], "r");
    if (!f) { perror("tokens"); return 2; }
    size_t cap = 1024;
    conns = calloc(cap, sizeof(Conn));
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = 0;
        char *tok = sp + 1;
        tok[strcspn(tok, "\r\n")] = 0;
        if ((size_t)nconns == cap) { cap *= 2; conns = realloc(conns, cap * sizeof(Conn)); }
        Conn *c = &conns[nconns++];
        memset(c, 0, sizeof *c);
        c->user = strdup(line);
        c->ulen = strlen(line);
        c->token = strdup(tok);
        c->last_offset = -1;
    }
    fclose(f);
    lat = malloc(caplat * sizeof(int32_t));
    lat_port = malloc(caplat);
    ttfe = malloc((nconns + 1) * sizeof(long long));

    int epfd = epoll_create1(0);
    struct epoll_event evs[1024];
    long long t_start = now_us();
    int next = 0;
    char req[4096];
    /* handshakes, at most 100 in flight */
    while (opened + failed < nconns) {
        while (inflight < 100 && next < nconns) {
            if (start_connect(&conns[next++], epfd) == 0) inflight++;
            else failed++;
        }
        if (now_us() - t_start > (long long)(timeout_s * 1e6)) break;
        int n = epoll_wait(epfd, evs, 1024, 100);
        for (int i = 0; i < n; i++) {
            Conn *c = &conns[evs[i].data.u32];
            if (c->state == ST_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                int rn = snprintf(req, sizeof req,
                                  "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                                  sio ? "/socket.io/?EIO=4&transport=websocket" : "/ws",
                                  ports[evs[i].data.u32 % nports],
                                  c->token);
                if (err || send(c->fd, req, rn, MSG_NOSIGNAL) != rn) {
                    mark_dead(c, epfd); inflight--; failed++;
                    continue;
                }
                c->state = ST_UPGRADING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            } else if (c->state == ST_UPGRADING) {
                grow(c);
                ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (r <= 0) { mark_dead(c, epfd); inflight--; failed++; continue; }
                c->len += r;
                char *eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
                if (!eoh) continue;
                if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0) {
                    mark_dead(c, epfd); inflight--; failed++;
                    continue;
                }
                size_t hl = eoh + 4 - c->buf;
                memmove(c->buf, c->buf + hl, c->len - hl);
                c->len -= hl;
                if (sio) {
                    c->state = ST_SIO; /* open once the namespace connect is answered */
                } else {
                    c->state = ST_OPEN;
                    opened++;
                    inflight--;
                }
                parse_frames(c, epfd);
                if (sio && c->state == ST_DEAD) { inflight--; failed++; }
            } else if (c->state == ST_SIO) {
                grow(c);
                ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (r <= 0) { mark_dead(c, epfd); inflight--; failed++; continue; }
                c->len += r;
                parse_frames(c, epfd);
                if (c->state == ST_DEAD) { inflight--; failed++; }
            } else if (c->state == ST_OPEN) {
                grow(c);
                ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (r <= 0) { mark_dead(c, epfd); continue; }
                c->len += r;
                parse_frames(c, epfd);
            }
        }
    }
    long long connect_ms = (now_us() - t_start) / 1000;
    printf("READY %d %d %lld\n", opened, failed, connect_ms);
    fflush(stdout);

    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    long long deadline = now_us() + (long long)(timeout_s * 1e6);
    int stdin_open = 1;
    char cmd[256];
    size_t cmdlen = 0;
    for (;;) {
        long long t = now_us();
        if (t > deadline) break;
        if (mode != M_IDLE && (expect_per_conn > 0 || mode == M_E2E) && done_conns >= opened) break;
        if (!stdin_open && mode == M_IDLE) break;
        if (mode == M_STREAM && first_us && t - last_us > 3000000) break; /* stalled */
        int n = epoll_wait(epfd, evs, 1024, 50);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                ssize_t r = read(0, cmd + cmdlen, sizeof cmd - 1 - cmdlen);
                if (r <= 0) { stdin_open = 0; epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL); continue; }
                cmdlen += r;
                cmd[cmdlen] = 0;
                if (strstr(cmd, "GO") && mode == M_E2E) {
                    static const char msg[] =
                        "{\"type\":\"user_message\",\"id\":\"m1\",\"content\":\"what is 12*7 please\"}";
                    for (int k = 0; k < nconns; k++) {
                        if (conns[k].state != ST_OPEN) continue;
                        conns[k].sent_us = now_us();
                        send_frame(&conns[k], 1, msg, sizeof msg - 1);
                    }
                }
                cmdlen = 0;
                continue;
            }
            Conn *c = &conns[evs[i].data.u32];
            if (c->state != ST_OPEN) continue;
            grow(c);
            ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (r <= 0) { mark_dead(c, epfd); continue; }
            c->len += r;
            parse_frames(c, epfd);
        }
        if (!stdin_open && mode != M_IDLE && expect_per_conn <= 0 && mode != M_E2E) break;
        if (sleep_us > 0 && n > 0) usleep(sleep_us);
    }
    cpu_last = cpu_s();
    int still_open = 0;
    for (int k = 0; k < nconns; k++) still_open += conns[k].state == ST_OPEN;

    /* latency p99 per port (node), before the samples are sorted together */
    static char by_port[16 * 24];
    size_t at = 0;
    for (int k = 0; k < nports; k++) {
        size_t m = 0;
        for (size_t i = 0; i < nlat; i++) if (lat_port[i] == k) m++;
        int32_t *mine = malloc((m ? m : 1) * sizeof(int32_t));
        m = 0;
        for (size_t i = 0; i < nlat; i++) if (lat_port[i] == k) mine[m++] = lat[i];
        qsort(mine, m, sizeof(int32_t), cmp32);
        at += snprintf(by_port + at, sizeof by_port - at, "%s%lld", k ? "," : "",
                       m ? (long long)mine[(size_t)(0.99 * (m - 1))] : -1LL);
        free(mine);
    }
    /* latency percentiles */
    qsort(lat, nlat, sizeof(int32_t), cmp32);
    qsort(ttfe, nttfe, sizeof(long long), cmp64);
#define PCT(arr, n, q) ((n) ? (long long)(arr)[(size_t)((q) * ((n)-1))] : -1)
    double wall = (last_us - first_us) / 1e6;
    printf("{\"conns\":%d,\"opened\":%d,\"failed\":%d,\"still_open\":%d,\"connect_ms\":%lld,"
           "\"received\":%lld,\"lost\":%lld,\"reordered\":%lld,\"misrouted\":%lld,"
           "\"coalesced\":%lld,\"closed_early\":%lld,\"done_conns\":%lld,"
           "\"first_us\":%lld,\"last_us\":%lld,\"client_cpu_s\":%.4f,\"client_cpu_pct\":%.1f,"
           "\"lat_p99_by_port\":[%s],\"lat_n\":%zu,\"lat_p50\":%lld,\"lat_p99\":%lld,\"lat_p999\":%lld,\"lat_max\":%lld,"
           "\"ttfe_n\":%zu,\"ttfe_p50\":%lld,\"ttfe_p99\":%lld,\"ttfe_max\":%lld}\n",
           nconns, opened, failed, still_open, connect_ms, received_total, lost, reordered,
           misrouted, coalesced, closed_early, done_conns, first_us, last_us,
           cpu_first >= 0 ? cpu_last - cpu_first : 0.0,
           (cpu_first >= 0 && wall > 0) ? 100.0 * (cpu_last - cpu_first) / wall : 0.0, by_port, nlat,
           PCT(lat, nlat, 0.5), PCT(lat, nlat, 0.99), PCT(lat, nlat, 0.999), PCT(lat, nlat, 1.0),
           nttfe, PCT(ttfe, nttfe, 0.5), PCT(ttfe, nttfe, 0.99), PCT(ttfe, nttfe, 1.0));
    fflush(stdout);
    return 0;
}
