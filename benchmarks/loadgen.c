/*
 * loadgen.c - the Modbus/TCP load generator of bench_tcp.py.
 *
 * Why C: a Python client spends more time per request than the servers it
 * measures, so it would measure itself.  One thread, epoll, non-blocking
 * sockets with TCP_NODELAY: on this machine that drives a C server at
 * ~1 M requests/s pipelined, well above any Python server.
 *
 * What it does: opens -c connections to a loopback address, then keeps -d
 * requests in flight on each (pipelining: a new request goes out as soon as an
 * answer comes in).  Every answer is checked against the request it answers
 * (transaction id among the outstanding ones, unit id, function code, length
 * and byte count or echo; Messaging on TCP/IP Implementation Guide V1.0b
 * §3.1.3, MODBUS Application Protocol V1.1b3 §6.3, §6.6, §6.12).  An exception
 * answer, a mismatch, a request unanswered within -o ms (the connection is
 * then reopened), a refused connect or a connection the server closes counts
 * as an error.  After -w seconds of warm-up, -T seconds are measured:
 * answers completed in that window give requests/s and a latency histogram.
 * With -I it only opens the connections and holds them, sending nothing
 * (memory per idle connection).
 *
 * Output, one line on stdout:
 *   requests=N errors=E seconds=S rps=R p50_us=.. p99_us=.. max_us=.. [more key=value]
 * Exit: 0 ok, 1 bad usage or setup, 2 more errors than -E, 3 no connection,
 * 4 the alarm() backstop fired (the run overran its own time bound).
 *
 * Build: cc -O2 -Wall -o loadgen loadgen.c      Usage: loadgen -h
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADU_MAX 260     /* MBAP header 7 + PDU 253 (Implementation Guide §3.1.3) */
#define TICK_NS 10000000ull  /* timeouts and reconnects are looked at every 10 ms */
#define RETRY_NS 50000000ull /* a closed connection is reopened after 50 ms */
#define VERBOSE_LINES 20     /* -v prints at most this many error lines */

/* ------------------------------------------------------------------ options */

static struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int port, conns, depth, fc, unit, address, stride, qty, timeout_ms, max_connecting;
    long max_errors;
    double seconds, warmup, connect_s;
    bool idle, verbose;
} opt;

/* One line on stderr, "loadgen: " first: what fail() and note() both print. */
static void say(const char *fmt, va_list ap)
{
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    exit(code);
}

static long int_arg(int flag, const char *text, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        fail(1, "-%c %s: expected a whole number from %ld to %ld", flag, text, lo, hi);
    return v;
}

static double seconds_arg(int flag, const char *text, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi))
        fail(1, "-%c %s: expected seconds from %g to %g", flag, text, lo, hi);
    return v;
}

/* A benchmark tool for this machine: numeric loopback addresses only, so a
 * typo cannot aim a load test at another host. */
static void set_host(const char *host)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&opt.addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&opt.addr;
    memset(&opt.addr, 0, sizeof opt.addr);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1 && (ntohl(v4->sin_addr.s_addr) >> 24) == 127) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)opt.port);
        opt.addrlen = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1 && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)opt.port);
        opt.addrlen = sizeof *v6;
    } else {
        fail(1, "-H %s: only loopback addresses (127.x.x.x, ::1, localhost) are accepted", host);
    }
}

static void usage(FILE *out)
{
    fputs("usage: loadgen [options]   Modbus/TCP load generator, loopback only\n"
          "  -H host   127.x.x.x, ::1 or localhost (default 127.0.0.1)\n"
          "  -p port   server port (default 502)\n"
          "  -c N      connections (default 1)\n"
          "  -d N      requests in flight per connection, 1 = no pipelining (default 1)\n"
          "  -f FC     3 read holding registers | 6 write single register |\n"
          "            16 write multiple registers (default 3)\n"
          "  -a ADDR   first register, 0-based (default 0)\n"
          "  -s N      connection i starts at ADDR + i*N: writers of their own\n"
          "            registers (default 0: every connection at ADDR)\n"
          "  -n Q      registers per request for -f 3 and 16 (default 10)\n"
          "  -u UNIT   unit id (default 1)\n"
          "  -w S      warm-up seconds, not measured (default 1)\n"
          "  -T S      measured seconds (default 5); with -I, seconds to hold\n"
          "  -o MS     per-request timeout: the connection is then reopened; after the\n"
          "            run, answers still due are awaited this long (default 1000)\n"
          "  -C S      time allowed to open all connections (default 15)\n"
          "  -P N      connects in progress at once (default 16)\n"
          "  -E N      exit 2 when errors > N (default 0)\n"
          "  -I        idle: open the connections, hold them -T seconds, send nothing\n"
          "  -v        print the first errors on stderr\n"
          "output: requests= errors= seconds= rps= p50_us= p99_us= max_us= and more\n"
          "exit: 0 ok, 1 usage/setup, 2 errors above -E, 3 no connection, 4 overran\n",
          out);
}

static void parse_options(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    opt.port = 502;
    opt.conns = opt.depth = opt.unit = 1;
    opt.fc = 3;
    opt.qty = 10;
    opt.timeout_ms = 1000;
    opt.max_connecting = 16;
    opt.seconds = 5;
    opt.warmup = 1;
    opt.connect_s = 15;
    int c;
    while ((c = getopt(argc, argv, "H:p:c:d:f:a:s:n:u:w:T:o:C:P:E:Ivh")) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': opt.port = (int)int_arg(c, optarg, 1, 65535); break;
        case 'c': opt.conns = (int)int_arg(c, optarg, 1, 50000); break;
        case 'd': opt.depth = (int)int_arg(c, optarg, 1, 4096); break;
        case 'f': opt.fc = (int)int_arg(c, optarg, 3, 16); break;
        case 'a': opt.address = (int)int_arg(c, optarg, 0, 65535); break;
        case 's': opt.stride = (int)int_arg(c, optarg, 0, 65535); break;
        case 'n': opt.qty = (int)int_arg(c, optarg, 1, 125); break;
        case 'u': opt.unit = (int)int_arg(c, optarg, 0, 255); break;
        case 'w': opt.warmup = seconds_arg(c, optarg, 0, 600); break;
        case 'T': opt.seconds = seconds_arg(c, optarg, 0.001, 3600); break;
        case 'o': opt.timeout_ms = (int)int_arg(c, optarg, 1, 600000); break;
        case 'C': opt.connect_s = seconds_arg(c, optarg, 0.001, 600); break;
        case 'P': opt.max_connecting = (int)int_arg(c, optarg, 1, 10000); break;
        case 'E': opt.max_errors = int_arg(c, optarg, 0, 1000000000000L); break;
        case 'I': opt.idle = true; break;
        case 'v': opt.verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(1);
        }
    }
    if (optind < argc)
        fail(1, "unexpected argument %s (see -h)", argv[optind]);
    if (opt.fc != 3 && opt.fc != 6 && opt.fc != 16)
        fail(1, "-f %d: only 3, 6 and 16 are supported", opt.fc);
    if (opt.fc == 16 && opt.qty > 123) /* §6.12: 1..123 registers */
        fail(1, "-n %d: FC16 writes 1 to 123 registers", opt.qty);
    int span = opt.fc == 6 ? 1 : opt.qty;
    if (opt.address + (long)opt.stride * (opt.conns - 1) + span > 65536)
        fail(1, "-a %d -s %d -n %d: the registers of -c %d connections run past address 65535", opt.address,
             opt.stride, span, opt.conns);
    set_host(host);
}

/* -------------------------------------------------------------------- time */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --------------------------------------------------- latency histogram (ns)
 * Log-linear: below 2^SUB_BITS ns one bucket per ns, then 2^SUB_BITS buckets
 * per power of two, i.e. a bucket is at most 1/64 (1.6 %) of its value wide:
 * far below a microsecond up to 64 us, and a constant relative error above. */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define BUCKETS (SUB + (64 - SUB_BITS) * SUB)

static struct {
    uint64_t count[BUCKETS];
    uint64_t n, min, max;
    double sum;
} hist;

static int bucket_of(uint64_t v)
{
    if (v < SUB)
        return (int)v;
    int top = 63 - __builtin_clzll(v); /* >= SUB_BITS */
    int shift = top - SUB_BITS;
    return SUB + shift * SUB + (int)((v >> shift) - SUB);
}

static uint64_t bucket_mid(int i) /* the middle of bucket i's range */
{
    if (i < SUB)
        return (uint64_t)i;
    int shift = (i - SUB) / SUB;
    uint64_t low = ((uint64_t)((i - SUB) % SUB) + SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

static void hist_add(uint64_t v)
{
    hist.count[bucket_of(v)]++;
    if (hist.n == 0 || v < hist.min)
        hist.min = v;
    if (v > hist.max)
        hist.max = v;
    hist.n++;
    hist.sum += (double)v;
}

static double percentile_us(double p)
{
    if (hist.n == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)hist.n);
    if ((double)rank < p * (double)hist.n || rank == 0)
        rank++; /* ceil, and at least the first value */
    uint64_t seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist.count[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            if (v > hist.max)
                v = hist.max;
            if (v < hist.min)
                v = hist.min;
            return (double)v / 1e3;
        }
    }
    return (double)hist.max / 1e3;
}

/* ----------------------------------------------------------------- counters */

static struct {
    uint64_t ok_window, ok_total, sent, timeouts, exceptions, bad_tid, bad_unit, bad_fc, bad_len,
        frame_err, disconnects, connect_fail, reconnects, ooo;
} st;

static uint64_t error_count(void)
{
    return st.timeouts + st.exceptions + st.bad_tid + st.bad_unit + st.bad_fc + st.bad_len +
           st.frame_err + st.disconnects + st.connect_fail;
}

static int verbose_left = VERBOSE_LINES;

static void note(const char *fmt, ...)
{
    if (!opt.verbose || verbose_left <= 0)
        return;
    verbose_left--;
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
}

/* -------------------------------------------------------------- connections
 * A request in flight holds a slot.  Its transaction id carries the slot index
 * in the low bits and a per-slot generation above them, so an answer finds its
 * request in O(1), answers may come in any order, and a stray or repeated
 * answer for a reused slot does not match. */

struct slot {
    uint64_t sent_ns;
    uint64_t seq; /* send order on the connection: out-of-order answers show here */
    uint16_t tid, value;
    uint16_t gen;
    bool busy;
};

enum state { CLOSED, CONNECTING, OPEN };

struct conn {
    int fd;
    enum state state;
    bool ever_open, want_out;
    uint64_t retry_at, next_seq, last_answered_seq;
    int in_flight;
    struct slot *slots;
    int *free_slots, nfree;
    int address; /* its first register: -a plus its index times -s */
    uint8_t *rbuf, *wbuf;
    size_t rlen, wlen, woff;
};

enum phase { CONNECT, LOAD, DRAIN, HOLD };

static struct conn *conns;
static int epfd, slot_bits, n_open, n_connecting;
static enum phase phase;
static uint64_t win_start, win_end;

static size_t wbuf_size(void) { return (size_t)opt.depth * ADU_MAX; }
static size_t rbuf_size(void) { return (size_t)(opt.depth + 1) * ADU_MAX; }

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static void watch(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0)
        fail(1, "epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c, uint64_t now)
{
    if (c->state == OPEN)
        n_open--;
    else if (c->state == CONNECTING)
        n_connecting--;
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = CLOSED;
    c->want_out = false;
    c->rlen = c->wlen = c->woff = 0;
    c->in_flight = 0;
    c->nfree = 0;
    for (int i = opt.depth - 1; i >= 0; i--) {
        c->slots[i].busy = false;
        c->free_slots[c->nfree++] = i;
    }
    c->retry_at = now + RETRY_NS;
}

static void conn_connect(struct conn *c, uint64_t now)
{
    c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fail(1, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0 && errno != EINPROGRESS) {
        st.connect_fail++;
        note("connect: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        c->retry_at = now + RETRY_NS;
        return;
    }
    c->state = CONNECTING;
    n_connecting++;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Append one request to the write buffer; the caller sends. */
static void push_request(struct conn *c, uint64_t now)
{
    int i = c->free_slots[--c->nfree];
    struct slot *s = &c->slots[i];
    s->gen++;
    s->tid = (uint16_t)((unsigned)s->gen << slot_bits | (unsigned)i);
    s->seq = ++c->next_seq;
    s->value = (uint16_t)s->seq;
    s->sent_ns = now;
    s->busy = true;
    c->in_flight++;
    st.sent++;

    uint8_t *p = c->wbuf + c->wlen;
    unsigned pdu_len = opt.fc == 16 ? 6u + 2u * (unsigned)opt.qty : 5u;
    put16(p, s->tid);
    put16(p + 2, 0);           /* protocol id: Modbus */
    put16(p + 4, pdu_len + 1); /* length: unit id + PDU */
    p[6] = (uint8_t)opt.unit;
    p[7] = (uint8_t)opt.fc;
    put16(p + 8, (unsigned)c->address);
    if (opt.fc == 6) {
        put16(p + 10, s->value);
    } else {
        put16(p + 10, (unsigned)opt.qty);
        if (opt.fc == 16) {
            p[12] = (uint8_t)(2 * opt.qty);
            for (int k = 0; k < opt.qty; k++)
                put16(p + 13 + 2 * k, (uint16_t)(s->value + k));
        }
    }
    c->wlen += 7 + pdu_len;
}

/* Send what is buffered; false when the connection is broken. */
static bool conn_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            c->want_out = true;
            return true;
        } else {
            return false;
        }
    }
    c->wlen = c->woff = 0;
    if (c->want_out)
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
    c->want_out = false;
    return true;
}

/* Top the connection up to -d requests in flight, while the run lasts. */
static bool conn_refill(struct conn *c, uint64_t now)
{
    if (phase != LOAD || now >= win_end || c->nfree == 0)
        return true;
    if (c->woff) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    while (c->nfree > 0)
        push_request(c, now);
    return conn_flush(c);
}

/* One complete answer: find its request, check it, count it. */
static void check_answer(struct conn *c, const uint8_t *f, unsigned len, uint64_t now)
{
    unsigned tid = get16(f);
    unsigned i = tid & ((1u << slot_bits) - 1);
    struct slot *s = i < (unsigned)opt.depth ? &c->slots[i] : NULL;
    if (!s || !s->busy || s->tid != tid) {
        st.bad_tid++;
        note("answer with transaction id %u, which no request in flight has", tid);
        return;
    }
    s->busy = false;
    c->free_slots[c->nfree++] = (int)i;
    c->in_flight--;
    if (s->seq < c->last_answered_seq)
        st.ooo++; /* answered after a request sent later */
    else
        c->last_answered_seq = s->seq;

    const uint8_t *pdu = f + 7;
    unsigned pdu_len = len - 1;
    bool good;
    if (f[6] != opt.unit) {
        st.bad_unit++;
        note("unit id %u in an answer, %d expected", f[6], opt.unit);
        return;
    }
    if (pdu[0] == (opt.fc | 0x80)) {
        st.exceptions++;
        note("exception %d to FC%d", pdu_len > 1 ? pdu[1] : -1, opt.fc);
        return;
    }
    if (pdu[0] != opt.fc) {
        st.bad_fc++;
        note("function code %u in an answer to FC%d", pdu[0], opt.fc);
        return;
    }
    if (opt.fc == 3) /* §6.3: byte count, then 2 x quantity bytes */
        good = pdu_len == 2u + 2u * (unsigned)opt.qty && pdu[1] == 2 * opt.qty;
    else /* §6.6, §6.12: address, then the value (FC06) or the quantity (FC16) */
        good = pdu_len == 5 && get16(pdu + 1) == (unsigned)c->address &&
               get16(pdu + 3) == (opt.fc == 6 ? s->value : (unsigned)opt.qty);
    if (!good) {
        st.bad_len++;
        note("malformed answer to FC%d (PDU of %u bytes)", opt.fc, pdu_len);
        return;
    }
    st.ok_total++;
    if (now >= win_start && now < win_end) {
        st.ok_window++;
        hist_add(now - s->sent_ns);
    }
}

/* Read what has arrived, check every complete answer, refill; false = close. */
static bool conn_read(struct conn *c)
{
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, rbuf_size() - c->rlen, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return true;
    if (n <= 0) {
        st.disconnects++;
        note("the server closed a connection (%s)", n == 0 ? "EOF" : strerror(errno));
        return false;
    }
    uint64_t now = now_ns();
    if (phase == HOLD || phase == CONNECT) { /* nothing was asked: anything is wrong */
        st.frame_err++;
        note("%zd bytes nobody asked for", n);
        return false;
    }
    c->rlen += (size_t)n;
    size_t off = 0;
    while (c->rlen - off >= 7) {
        const uint8_t *f = c->rbuf + off;
        unsigned len = get16(f + 4);
        if (get16(f + 2) != 0 || len < 2 || len > ADU_MAX - 6) { /* cannot find the next frame */
            st.frame_err++;
            note("bad MBAP header: protocol id %u, length %u", get16(f + 2), len);
            return false;
        }
        if (c->rlen - off < 6 + (size_t)len)
            break;
        check_answer(c, f, len, now);
        off += 6 + len;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    return conn_refill(c, now);
}

static void conn_connected(struct conn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    n_connecting--;
    if (err) {
        st.connect_fail++;
        note("connect: %s", strerror(err));
        c->state = CLOSED;
        conn_close(c, now);
        return;
    }
    c->state = OPEN;
    n_open++;
    if (c->ever_open)
        st.reconnects++;
    c->ever_open = true;
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
    if (!conn_refill(c, now)) {
        st.disconnects++;
        conn_close(c, now);
    }
}

/* ------------------------------------------------------------------ the loop */

static uint64_t oldest_sent(const struct conn *c)
{
    uint64_t t = UINT64_MAX;
    for (int i = 0; i < opt.depth; i++)
        if (c->slots[i].busy && c->slots[i].sent_ns < t)
            t = c->slots[i].sent_ns;
    return t;
}

/* Every tick: unanswered requests time out (the connection is reopened), and
 * closed connections are reopened, a few at a time so the server's accept
 * queue stays short. */
static void tick(uint64_t now)
{
    uint64_t timeout = (uint64_t)opt.timeout_ms * 1000000ull;
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->state == OPEN && c->in_flight && now - oldest_sent(c) > timeout) {
            st.timeouts += (uint64_t)c->in_flight;
            note("%d request(s) unanswered after %d ms: reconnecting", c->in_flight, opt.timeout_ms);
            conn_close(c, now);
        }
    }
    if (phase != CONNECT && phase != LOAD)
        return;
    for (int i = 0; i < opt.conns && n_connecting < opt.max_connecting; i++) {
        struct conn *c = &conns[i];
        if (c->state == CLOSED && now >= c->retry_at)
            conn_connect(c, now);
    }
}

static int in_flight_total(void)
{
    int n = 0;
    for (int i = 0; i < opt.conns; i++)
        n += conns[i].state == OPEN ? conns[i].in_flight : 0;
    return n;
}

static bool phase_done(uint64_t now, uint64_t until)
{
    if (now >= until)
        return true;
    if (phase == CONNECT)
        return n_open == opt.conns;
    if (phase == DRAIN)
        return in_flight_total() == 0;
    return false;
}

static void run_phase(enum phase p, uint64_t until)
{
    struct epoll_event events[256];
    uint64_t next_tick = 0;
    phase = p;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= next_tick) {
            tick(now);
            next_tick = now + TICK_NS;
        }
        if (phase_done(now, until))
            return;
        uint64_t wake = until < next_tick ? until : next_tick;
        int ms = (int)((wake - now + 999999) / 1000000);
        int n = epoll_wait(epfd, events, 256, ms);
        if (n < 0 && errno != EINTR)
            fail(1, "epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            uint32_t e = events[k].events;
            now = now_ns();
            if (c->state == CONNECTING) {
                conn_connected(c, now);
                continue;
            }
            if (c->state != OPEN)
                continue;
            bool ok = true;
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                ok = conn_read(c);
            if (ok && (e & EPOLLOUT) && c->state == OPEN && !conn_flush(c)) {
                st.disconnects++;
                ok = false;
            }
            if (!ok)
                conn_close(c, now); /* reopened by tick(), except while idle or draining */
        }
    }
}

/* ------------------------------------------------------------------- setup */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "loadgen: overran its own time bound, stopping\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(4);
}

/* 10,000 connections need more descriptors than the usual soft limit of 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)opt.conns + 16)
        fail(1, "-c %d needs %d file descriptors, the hard limit is %llu (raise ulimit -Hn)", opt.conns,
             opt.conns + 16, (unsigned long long)rl.rlim_cur);
}

static void setup(void)
{
    while ((1 << slot_bits) < opt.depth)
        slot_bits++;
    conns = calloc((size_t)opt.conns, sizeof *conns);
    if (!conns)
        fail(1, "out of memory");
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        c->slots = calloc((size_t)opt.depth, sizeof *c->slots);
        c->free_slots = calloc((size_t)opt.depth, sizeof *c->free_slots);
        c->rbuf = malloc(rbuf_size());
        c->wbuf = malloc(wbuf_size());
        if (!c->slots || !c->free_slots || !c->rbuf || !c->wbuf)
            fail(1, "out of memory");
        c->fd = -1;
        c->address = opt.address + i * opt.stride;
        conn_close(c, 0); /* every slot free; connect at the first tick */
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fail(1, "epoll_create1: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(opt.connect_s + opt.warmup + opt.seconds + opt.timeout_ms / 1000.0) + 30);
    raise_fd_limit();
    setup();

    uint64_t begin = now_ns();
    run_phase(CONNECT, begin + (uint64_t)(opt.connect_s * 1e9));
    int conns_ok = n_open;
    uint64_t started = now_ns();
    if (conns_ok > 0 && opt.idle) {
        win_start = win_end = started; /* nothing is measured */
        run_phase(HOLD, started + (uint64_t)(opt.seconds * 1e9));
    } else if (conns_ok > 0) {
        win_start = started + (uint64_t)(opt.warmup * 1e9);
        win_end = win_start + (uint64_t)(opt.seconds * 1e9);
        phase = LOAD;
        for (int i = 0; i < opt.conns; i++)
            if (conns[i].state == OPEN && !conn_refill(&conns[i], started)) {
                st.disconnects++;
                conn_close(&conns[i], started);
            }
        run_phase(LOAD, win_end);
        /* Answers still due are awaited: a server that drops requests shows
         * as timeouts even in a run shorter than -o. */
        run_phase(DRAIN, now_ns() + (uint64_t)opt.timeout_ms * 1000000ull);
        for (int i = 0; i < opt.conns; i++)
            if (conns[i].state == OPEN)
                st.timeouts += (uint64_t)conns[i].in_flight;
    }
    if (conns_ok < opt.conns)
        fprintf(stderr, "loadgen: only %d of %d connections opened in %g s\n", conns_ok, opt.conns, opt.connect_s);

    uint64_t errors = error_count();
    double rps = opt.idle ? 0.0 : (double)st.ok_window / opt.seconds;
    printf("requests=%llu errors=%llu seconds=%.3f rps=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f "
           "p90_us=%.1f p999_us=%.1f mean_us=%.1f min_us=%.1f conns=%d conns_ok=%d depth=%d fc=%d "
           "timeouts=%llu exceptions=%llu bad_tid=%llu bad_unit=%llu bad_fc=%llu bad_len=%llu "
           "frame_err=%llu disconnects=%llu connect_fail=%llu reconnects=%llu ooo=%llu "
           "sent_total=%llu ok_total=%llu idle=%d connect_s=%.3f\n",
           (unsigned long long)st.ok_window, (unsigned long long)errors, opt.seconds, rps,
           percentile_us(0.50), percentile_us(0.99), (double)hist.max / 1e3, percentile_us(0.90),
           percentile_us(0.999), hist.n ? hist.sum / (double)hist.n / 1e3 : 0.0, (double)hist.min / 1e3,
           opt.conns, conns_ok, opt.depth, opt.fc, (unsigned long long)st.timeouts,
           (unsigned long long)st.exceptions, (unsigned long long)st.bad_tid,
           (unsigned long long)st.bad_unit, (unsigned long long)st.bad_fc, (unsigned long long)st.bad_len,
           (unsigned long long)st.frame_err, (unsigned long long)st.disconnects,
           (unsigned long long)st.connect_fail, (unsigned long long)st.reconnects,
           (unsigned long long)st.ooo, (unsigned long long)st.sent, (unsigned long long)st.ok_total,
           opt.idle, (double)(started - begin) / 1e9);
    fflush(stdout);
    if (conns_ok == 0)
        return 3;
    return errors > (uint64_t)opt.max_errors ? 2 : 0;
}
