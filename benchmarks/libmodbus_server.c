/*
 * libmodbus_server.c - the C ceiling row of bench_tcp.py.
 *
 * Why it exists: a Python server's throughput only means something if the
 * load generator could have driven more.  This server does the same work as
 * the Python servers (FC03 from four 65536-entry tables where holding register
 * i = i for i < 100) with libmodbus, in one thread, so its figure shows how far
 * loadgen can go on this machine.  It is a yardstick, not a competitor.
 *
 * Design: one thread, poll() over the listener and every client.  Each client
 * has its own receive buffer; one recv() takes whatever has arrived, and every
 * complete ADU in it (framed by the MBAP length field) is answered with
 * modbus_reply() on a shared modbus_t pointed at that socket.  Reading
 * ourselves instead of calling modbus_receive() matters for pipelining:
 * modbus_receive() spends a select() and two read()s on every request, which
 * made this "ceiling" slower than the Python servers at depth 16.  When one
 * recv() brought several requests, TCP_CORK merges their replies into few
 * segments, as a Python server's single transport.write() of a batch would.
 *
 * Build:  cc -O2 -Wall -o libmodbus_server libmodbus_server.c \
 *            $(pkg-config --cflags --libs libmodbus)
 * Usage:  libmodbus_server PORT        (binds 127.0.0.1 only)
 * Prints "ready port=PORT" once listening; SIGTERM/SIGINT stop it (exit 0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 10240 /* bench_connections.py opens 10,000 */
#define BUF_SIZE 4096  /* > 16 pipelined ADUs of the benchmark, and >= one 260-byte ADU */
#define MBAP_SIZE 7
#define PRELOADED 100  /* holding registers 0..99 = i, like the Python servers */
#define TABLE_SIZE 65536

typedef struct {
    int fd;
    size_t len;
    uint8_t buf[BUF_SIZE];
} client_t;

static volatile sig_atomic_t stop_requested;
static struct pollfd pfd[MAX_CONNS + 1]; /* [0] is the listener; pfd[i] <-> clients[i] */
static client_t clients[MAX_CONNS + 1];

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* No SA_RESTART: poll() must return EINTR so that the loop sees the flag. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void set_cork(int fd, int on)
{
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

/* Length of the complete ADU at p (MBAP length + 6), 0 if incomplete, -1 if
 * the stream cannot be trusted (protocol id != 0, length outside 2..254). */
static int adu_length(const uint8_t *p, size_t avail)
{
    if (avail < MBAP_SIZE)
        return 0;
    unsigned proto = (unsigned)p[2] << 8 | p[3];
    unsigned len = (unsigned)p[4] << 8 | p[5];
    if (proto != 0 || len < 2 || len > 254)
        return -1;
    return avail >= len + 6 ? (int)(len + 6) : 0;
}

/* Count the complete ADUs in the buffer, so that a lone reply skips TCP_CORK. */
static int count_adus(const client_t *c)
{
    int n = 0, len;
    for (size_t pos = 0; (len = adu_length(c->buf + pos, c->len - pos)) > 0; pos += (size_t)len)
        n++;
    return n;
}

/* Read what has arrived and answer every complete request; -1 closes the connection. */
static int serve_client(modbus_t *ctx, modbus_mapping_t *map, client_t *c)
{
    ssize_t got = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
    if (got <= 0)
        return got < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->len += (size_t)got;
    int batch = count_adus(c);
    if (batch > 1)
        set_cork(c->fd, 1);
    modbus_set_socket(ctx, c->fd);
    size_t pos = 0;
    int len, rc = 0;
    while ((len = adu_length(c->buf + pos, c->len - pos)) > 0) {
        if (modbus_reply(ctx, c->buf + pos, len, map) < 0) {
            rc = -1;
            break;
        }
        pos += (size_t)len;
    }
    if (batch > 1)
        set_cork(c->fd, 0);
    if (len < 0)
        rc = -1;
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    return rc;
}

/* Nagle off: a pipelining client must not see a reply held back for an ACK. */
static int accept_client(int listener)
{
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void add_client(int *n, int fd)
{
    if (*n > MAX_CONNS) {
        close(fd);
        return;
    }
    pfd[*n] = (struct pollfd){.fd = fd, .events = POLLIN};
    clients[*n].fd = fd;
    clients[*n].len = 0;
    (*n)++;
}

static void remove_client(int *n, int i)
{
    close(clients[i].fd);
    (*n)--;
    if (i != *n) {
        pfd[i] = pfd[*n];
        clients[i].fd = clients[*n].fd;
        clients[i].len = clients[*n].len;
        memcpy(clients[i].buf, clients[*n].buf, clients[*n].len);
    }
}

static int serve(modbus_t *ctx, modbus_mapping_t *map, int listener)
{
    int n = 1;
    pfd[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    while (!stop_requested) {
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            return 1;
        }
        /* From the end, so that a removal moves an already-handled entry. */
        for (int i = n - 1; i >= 1; i--) {
            if (pfd[i].revents && serve_client(ctx, map, &clients[i]) < 0)
                remove_client(&n, i);
        }
        if (pfd[0].revents & POLLIN) {
            int fd = accept_client(listener);
            if (fd >= 0)
                add_client(&n, fd);
        }
    }
    for (int i = 1; i < n; i++)
        close(clients[i].fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    install_signals();
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new(TABLE_SIZE, TABLE_SIZE, TABLE_SIZE, TABLE_SIZE);
    if (!ctx || !map) {
        fprintf(stderr, "libmodbus setup failed: %s\n", modbus_strerror(errno));
        return 1;
    }
    for (int i = 0; i < PRELOADED; i++)
        map->tab_registers[i] = (uint16_t)i;
    int listener = modbus_tcp_listen(ctx, 1024);
    if (listener < 0) {
        fprintf(stderr, "listen failed: %s\n", modbus_strerror(errno));
        return 1;
    }
    printf("ready port=%d\n", port);
    fflush(stdout);
    int rc = serve(ctx, map, listener);
    close(listener);
    modbus_mapping_free(map);
    modbus_free(ctx);
    return rc;
}
