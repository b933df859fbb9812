/* What an application in a pod does to find a host: getaddrinfo(3) with
 * AF_UNSPEC and no flags, so the C library's resolver reads /etc/resolv.conf
 * (search path, ndots) and asks for A and AAAA. Built against musl
 * (musl-gcc -static) and against glibc by tests/podview.rs.
 *
 * Prints one address per line; on failure prints
 * "getaddrinfo: <code> <gai_strerror>" to stderr and exits 2. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 64;
    }
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    /* One entry per address rather than one per socket type. */
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo: %d %s\n", rc, gai_strerror(rc));
        return 2;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        const void *addr;
        if (ai->ai_family == AF_INET)
            addr = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            addr = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        else
            continue;
        if (inet_ntop(ai->ai_family, addr, buf, sizeof buf))
            printf("%s\n", buf);
    }
    freeaddrinfo(res);
    return 0;
}
