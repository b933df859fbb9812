/* Asks for SRV records the way a pod's application can: res_search(3), which
 * in glibc applies the search path and ndots of /etc/resolv.conf (musl's
 * res_search asks for the name as given). Built against glibc and musl by
 * tests/podview.rs.
 *
 * Prints "<priority> <weight> <port> <target>" per SRV record; on failure
 * prints "res_search: <h_errno name>" to stderr and exits 2. */
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>

static const char *herr(int e) {
    switch (e) {
    case HOST_NOT_FOUND: return "HOST_NOT_FOUND";
    case TRY_AGAIN: return "TRY_AGAIN";
    case NO_RECOVERY: return "NO_RECOVERY";
    case NO_DATA: return "NO_DATA";
    default: return "UNKNOWN";
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 64;
    }
    unsigned char buf[4096];
    int len = res_search(argv[1], ns_c_in, ns_t_srv, buf, sizeof buf);
    if (len < 0) {
        fprintf(stderr, "res_search: %s\n", herr(h_errno));
        return 2;
    }
    ns_msg msg;
    if (ns_initparse(buf, len, &msg) < 0) {
        fprintf(stderr, "res_search: unparsable reply\n");
        return 3;
    }
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_srv)
            continue;
        const unsigned char *rd = ns_rr_rdata(rr);
        char target[NS_MAXDNAME];
        if (ns_rr_rdlen(rr) < 7 ||
            ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd + 6, target, sizeof target) < 0) {
            fprintf(stderr, "res_search: bad SRV rdata\n");
            return 3;
        }
        printf("%u %u %u %s\n", ns_get16(rd), ns_get16(rd + 2), ns_get16(rd + 4), target);
    }
    return 0;
}
