/*
 * libmodbus_server.c - the C ceiling row of bench_tcp.py.
 *
 * Why it exists: a Python server's throughput only means something if the
 * load generator could have driven more.  This server does the same work as
 * the Python servers (FC03 from a table where holding register i = i for
 * i < 100) with libmodbus, single-threaded, so its figure shows how far mbload
 * can go on this machine.  It is not a fair competitor (C, no asyncio), only a
 * yardstick.
 *
 * Design: one thread, poll() over the listening socket and every client.  One
 * modbus_t context is reused for all clients by pointing it at the readable
 * socket (modbus_set_socket) before modbus_receive()/modbus_reply().
 * modbus_receive() reads exactly one ADU, so pipelined requests stay in the
 * kernel buffer and poll() reports the socket readable again.
 *
 * libmodbus waits with select() inside modbus_receive(), which cannot handle a
 * descriptor >= FD_SETSIZE, so such connections are refused (closed at once).
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
