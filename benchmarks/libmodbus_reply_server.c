/*
 * libmodbus_reply_server.c - libmodbus serving the way its manual shows:
 * modbus_receive() then modbus_reply(), one request at a time.
 *
 * Why it exists: libmodbus_server.c, the C yardstick of bench_tcp.py and
 * bench_connections.py, reads and frames requests itself and corks its
 * replies, so that it gains from pipelining as much as modbusd's batch does.
 * That is not how a program built on libmodbus serves: modbus_receive()
 * waits for one request with select() and reads it with two read()s (the MBAP
 * header, then the rest), and modbus_reply() sends its answer with one
 * send().  This row measures that server, libmodbus's documented loop (its
 * tests/unit-test-server.c and bandwidth-server-many-up.c do the same), with
 * the same data: FC03 from four 65536-entry tables, holding register i = i
 * for i < 100.
 *
 * Design: one thread, poll() over the listener and every client; a readable
 * client gets one modbus_receive() + modbus_reply() on a shared modbus_t
 * pointed at its socket.  Pipelined requests stay in the kernel buffer and
 * poll() reports the socket readable again.  modbus_receive() waits with
 * select(), which cannot take a descriptor >= FD_SETSIZE (1024), so such
 * connections are closed at once: this row has no 10,000-connection figure.
 *
 * Build:  cc -O2 -Wall -o libmodbus_reply_server libmodbus_reply_server.c \
 *            $(pkg-config --cflags --libs libmodbus)
 * Usage:  libmodbus_reply_server PORT        (binds 127.0.0.1 only)
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
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS FD_SETSIZE
#define PRELOADED 100 /* holding registers 0..99 = i, like the Python servers */
#define TABLE_SIZE 65536

static volatile sig_atomic_t stop_requested;

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

/* Accept one client; returns its fd or -1.  Nagle is switched off because a
 * pipelining client would otherwise see replies held back until an ACK. */
static int accept_client(modbus_t *ctx, int listener)
{
    int s = listener;
    int fd = modbus_tcp_accept(ctx, &s);
    if (fd < 0)
        return -1;
    if (fd >= MAX_FDS) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Serve one request on fd; returns -1 when the connection is to be closed. */
static int serve_one(modbus_t *ctx, modbus_mapping_t *map, int fd)
{
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    modbus_set_socket(ctx, fd);
    int rc = modbus_receive(ctx, query);
    if (rc < 0)
        return -1;
    if (rc == 0) /* request not for us: nothing to answer */
        return 0;
    return modbus_reply(ctx, query, rc, map) < 0 ? -1 : 0;
}

static int serve(modbus_t *ctx, modbus_mapping_t *map, int listener)
{
    static struct pollfd pfd[MAX_FDS];
    int n = 1;
    pfd[0].fd = listener;
    pfd[0].events = POLLIN;
    while (!stop_requested) {
        int ready = poll(pfd, (nfds_t)n, -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            return 1;
        }
        /* Clients first, from the end, so that removals are swaps. */
        for (int i = n - 1; i >= 1; i--) {
            if (!pfd[i].revents)
                continue;
            if (serve_one(ctx, map, pfd[i].fd) < 0) {
                close(pfd[i].fd);
                pfd[i] = pfd[--n];
            }
        }
        if (pfd[0].revents & POLLIN) {
            int fd = accept_client(ctx, listener);
            if (fd >= 0 && n < MAX_FDS) {
                pfd[n].fd = fd;
                pfd[n].events = POLLIN;
                pfd[n].revents = 0;
                n++;
            } else if (fd >= 0) {
                close(fd);
            }
        }
    }
    for (int i = 1; i < n; i++)
        close(pfd[i].fd);
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
    /* A client that stalls mid-frame must not freeze every other client. */
    modbus_set_indication_timeout(ctx, 1, 0);
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
