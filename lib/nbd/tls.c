/* SPDX-License-Identifier: MIT */
/*
 * lib/nbd/tls.c: TLS for the NBD server (see nbd_internal.h), with GnuTLS:
 * the handle's credentials (x509 certificates, or pre-shared keys from a
 * psktool file), and each connection's session once NBD_OPT_STARTTLS is
 * acknowledged.  Everything is non-blocking: the session reads and writes
 * the connection's socket through our own pull and push functions
 * (MSG_DONTWAIT), the handshake is run on as the socket allows
 * (GNUTLS_E_AGAIN), and the transport (transport.c) polls for the
 * direction GnuTLS waits for.  The PSK file is read once, when the handle
 * is made: no file is read on the loop's thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "error_internal.h"
#include "nbd_internal.h"

/* A PSK file's limits: the longest line, user names and keys. */
#define PSK_MAX_LINE 4096u
#define PSK_MAX_USER 256u
#define PSK_MAX_KEY 512u
#define PSK_MAX_KEYS 4096u
/* Plaintext per record sent. */
#define TLS_CHUNK 16384u

struct psk_key {
    char *user;
    uint8_t *key;
    size_t len;
};

struct nbd_tls {
    unsigned mode;
    bool verify_peer;
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk;
    gnutls_priority_t prio;
    struct psk_key *keys;
    size_t nkeys;
};

/* ---- Credentials --------------------------------------------------------- */

static int path_in(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return err_set(-ENAMETOOLONG, "TLS credentials: %s/%s: the path is too long", dir, name);
    return 0;
}

/* Whether PATH can be read: 0, or -errno with a message (WHAT names it). */
static int readable(const char *path, const char *what)
{
    if (access(path, R_OK) == 0)
        return 0;
    int e = errno;
    return err_set(-e, "Unable to access credentials %s (%s): %s", path, what, strerror(e));
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reads PATH, lines "USER:HEXKEY" (psktool's format; empty lines and lines
 * beginning with '#' are skipped). */
static int load_psk(struct nbd_tls *t, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        return err_set(-e, "Unable to access credentials %s (the PSK file): %s", path,
                       strerror(e));
    }
    char line[PSK_MAX_LINE + 2];
    unsigned lineno = 0;
    int r = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = 0;
        else if (n > PSK_MAX_LINE) {
            r = err_set(-EINVAL, "TLS credentials: %s line %u is longer than %u bytes", path,
                        lineno, PSK_MAX_LINE);
            break;
        }
        if (n && line[n - 1] == '\r')
            line[--n] = 0;
        if (n == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        size_t ul = colon ? (size_t)(colon - line) : 0;
        size_t hl = colon ? strlen(colon + 1) : 0;
        if (!colon || ul == 0 || ul > PSK_MAX_USER || hl == 0 || hl % 2 || hl / 2 > PSK_MAX_KEY) {
            r = err_set(-EINVAL, "TLS credentials: %s line %u: not USERNAME:HEXKEY (a name of "
                        "1 to %u bytes, a key of 1 to %u bytes in hex)", path, lineno,
                        PSK_MAX_USER, PSK_MAX_KEY);
            break;
        }
        if (t->nkeys == PSK_MAX_KEYS) {
            r = err_set(-EINVAL, "TLS credentials: %s: more than %u keys", path, PSK_MAX_KEYS);
            break;
        }
        struct psk_key k = {.len = hl / 2};
        k.user = strndup(line, ul);
        k.key = malloc(k.len);
        struct psk_key *nk = realloc(t->keys, (t->nkeys + 1) * sizeof *nk);
        if (nk)
            t->keys = nk;
        if (!k.user || !k.key || !nk) {
            free(k.user);
            free(k.key);
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        bool bad = false;
        for (size_t i = 0; i < k.len; i++) {
            int hi = hexval((unsigned char)colon[1 + 2 * i]);
            int lo = hexval((unsigned char)colon[2 + 2 * i]);
            if (hi < 0 || lo < 0)
                bad = true;
            k.key[i] = (uint8_t)((hi << 4) | (lo & 15));
        }
        if (bad) {
            free(k.user);
            free(k.key);
            r = err_set(-EINVAL, "TLS credentials: %s line %u: the key is not hexadecimal",
                        path, lineno);
            break;
        }
        t->keys[t->nkeys++] = k;
    }
    if (r == 0 && ferror(f))
        r = err_set(-EIO, "TLS credentials: reading %s: %s", path, strerror(errno));
    fclose(f);
    if (r == 0 && t->nkeys == 0)
        r = err_set(-EINVAL, "TLS credentials: %s holds no key", path);
    return r;
}

/* GnuTLS asks for the key of USER (the client's PSK identity). */
static int psk_lookup(gnutls_session_t session, const char *user, gnutls_datum_t *key)
{
    struct nbd_conn *c = gnutls_session_get_ptr(session);
    const struct nbd_tls *t = c->srv->tls;
    for (size_t i = 0; i < t->nkeys; i++) {
        if (strcmp(t->keys[i].user, user) != 0)
            continue;
        key->data = gnutls_malloc(t->keys[i].len);
        if (!key->data)
            return -1;
        memcpy(key->data, t->keys[i].key, t->keys[i].len);
        key->size = (unsigned)t->keys[i].len;
        return 0;
    }
    nbd_log(c->srv, "client %" PRIu64 ": TLS: no pre-shared key for the user '%.64s'", c->id,
            user);
    return -1;
}

static int gnutls_fail(int g, const char *what, const char *path)
{
    int e = g == GNUTLS_E_MEMORY_ERROR ? -ENOMEM
            : g == GNUTLS_E_FILE_ERROR ? -ENOENT : -EINVAL;
    return err_set(e, "TLS credentials: %s%s%s: %s", what, path ? " " : "", path ? path : "",
                   gnutls_strerror(g));
}

static int load_x509(struct nbd_tls *t, const char *dir)
{
    char ca[4096], crl[4096], cert[4096], key[4096];
    int r;
    if ((r = path_in(ca, sizeof ca, dir, "ca-cert.pem")) < 0 ||
        (r = path_in(crl, sizeof crl, dir, "ca-crl.pem")) < 0 ||
        (r = path_in(cert, sizeof cert, dir, "server-cert.pem")) < 0 ||
        (r = path_in(key, sizeof key, dir, "server-key.pem")) < 0)
        return r;
    int g = gnutls_certificate_allocate_credentials(&t->x509);
    if (g < 0)
        return gnutls_fail(g, "allocating", NULL);
    bool have_ca = access(ca, F_OK) == 0;
    if (t->verify_peer && !have_ca)
        return err_set(-ENOENT, "Unable to access credentials %s (the CA certificate, to "
                       "verify clients' certificates): %s", ca, strerror(ENOENT));
    if (have_ca) {
        if ((r = readable(ca, "the CA certificate")) < 0)
            return r;
        g = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
        if (g < 0)
            return gnutls_fail(g, "the CA certificate", ca);
        if (g == 0)
            return err_set(-EINVAL, "TLS credentials: %s holds no certificate", ca);
    }
    if (access(crl, F_OK) == 0) {
        if ((r = readable(crl, "the CRL")) < 0)
            return r;
        g = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
        if (g < 0)
            return gnutls_fail(g, "the CRL", crl);
    }
    if ((r = readable(cert, "the server certificate")) < 0 ||
        (r = readable(key, "the server key")) < 0)
        return r;
    g = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0)
        return err_set(g == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL, "TLS credentials: the "
                       "server certificate %s and key %s: %s", cert, key, gnutls_strerror(g));
    gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
    return 0;
}

int nbd_tls_new(struct nbd_tls **out, unsigned mode, const char *dir, bool verify_peer)
{
    *out = NULL;
    if (mode != VDISK_NBD_TLS_X509 && mode != VDISK_NBD_TLS_PSK)
        return err_set(-EINVAL, "unknown TLS mode %u", mode);
    if (!dir || !*dir)
        return err_set(-EINVAL, "TLS without a credentials directory (tls_dir)");
    if (verify_peer && mode != VDISK_NBD_TLS_X509)
        return err_set(-EINVAL, "VDISK_NBD_TLS_VERIFY_PEER needs x509 credentials");
    struct stat st;
    if (stat(dir, &st) < 0) {
        int e = errno;
        return err_set(-e, "TLS credentials: the directory %s: %s", dir, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(-ENOTDIR, "TLS credentials: %s is not a directory", dir);
    int g = gnutls_global_init();
    if (g < 0)
        return err_set(-EIO, "TLS: gnutls_global_init: %s", gnutls_strerror(g));
    struct nbd_tls *t = calloc(1, sizeof *t);
    if (!t) {
        gnutls_global_deinit();
        return err_set(-ENOMEM, "out of memory");
    }
    t->mode = mode;
    t->verify_peer = verify_peer;
    int r;
    const char *prio = "NORMAL";
    if (mode == VDISK_NBD_TLS_X509) {
        r = load_x509(t, dir);
    } else {
        char path[4096];
        prio = "NORMAL:+ECDHE-PSK:+DHE-PSK"; /* forward secrecy, as qemu */
        r = path_in(path, sizeof path, dir, "keys.psk");
        if (r == 0)
            r = load_psk(t, path);
        if (r == 0 && (g = gnutls_psk_allocate_server_credentials(&t->psk)) < 0)
            r = gnutls_fail(g, "allocating", NULL);
        if (r == 0) {
            gnutls_psk_set_server_credentials_function(t->psk, psk_lookup);
            gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
        }
    }
    if (r == 0 && (g = gnutls_priority_init(&t->prio, prio, NULL)) < 0)
        r = gnutls_fail(g, "the priority string", prio);
    if (r < 0) {
        nbd_tls_free(t);
        return r;
    }
    *out = t;
    return 0;
}

void nbd_tls_free(struct nbd_tls *t)
{
    if (!t)
        return;
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk)
        gnutls_psk_free_server_credentials(t->psk);
    if (t->prio)
        gnutls_priority_deinit(t->prio);
    for (size_t i = 0; i < t->nkeys; i++) {
        free(t->keys[i].user);
        explicit_bzero(t->keys[i].key, t->keys[i].len);
        free(t->keys[i].key);
    }
    free(t->keys);
    free(t);
    gnutls_global_deinit();
}

/* ---- A connection's session ---------------------------------------------- */

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    struct nbd_conn *c = p;
    ssize_t r;
    do
        r = recv(c->fd, buf, n, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        gnutls_transport_set_errno(c->tls_session, errno);
    return r;
}

static int pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
    struct nbd_conn *c = p;
    (void)ms; /* never waits: the loop polls */
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    return poll(&pf, 1, 0);
}

static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t n)
{
    struct nbd_conn *c = p;
    ssize_t r;
    do
        r = send(c->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        gnutls_transport_set_errno(c->tls_session, errno);
    return r;
}

int nbd_tls_begin(struct nbd_conn *c)
{
    const struct nbd_tls *t = c->srv->tls;
    gnutls_session_t s;
    int g = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
    if (g < 0)
        return -ENOMEM;
    c->tls_session = s;
    gnutls_session_set_ptr(s, c);
    g = gnutls_priority_set(s, t->prio);
    if (g == 0)
        g = t->x509 ? gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509)
                    : gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
    if (g < 0) {
        nbd_tls_end(c, false);
        return -ENOMEM;
    }
    if (t->x509 && t->verify_peer) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0);
    }
    gnutls_handshake_set_timeout(s, 0); /* the connection's deadline bounds it */
    gnutls_transport_set_ptr(s, c);
    gnutls_transport_set_pull_function(s, pull);
    gnutls_transport_set_pull_timeout_function(s, pull_timeout);
    gnutls_transport_set_push_function(s, push);
    c->tls_state = NBD_TLS_HANDSHAKE;
    c->tls_pending = false;
    return 0;
}

int nbd_tls_handshake(struct nbd_conn *c, const char **why)
{
    gnutls_session_t s = c->tls_session;
    int g;
    /* Non-fatal errors (a warning alert) are gone past, a few at a time. */
    for (unsigned k = 0;; k++) {
        g = gnutls_handshake(s);
        if (g >= 0 || g == GNUTLS_E_AGAIN || gnutls_error_is_fatal(g) || k == 16)
            break;
    }
    if (g == GNUTLS_E_AGAIN) {
        c->tls_pending = gnutls_record_get_direction(s) == 1;
        return 0;
    }
    c->tls_pending = false;
    if (g < 0) {
        *why = gnutls_strerror(g);
        /* Tells the client why, if the socket takes it now. */
        gnutls_alert_send_appropriate(s, g);
        return -1;
    }
    /* The options come again, over TLS. */
    c->tls_state = NBD_TLS_UP;
    c->rx = RX_OPT_HDR;
    c->got = 0;
    char *desc = gnutls_session_get_desc(s);
    nbd_info(c->srv, "client %" PRIu64 ": TLS: %s", c->id, desc ? desc : "up");
    gnutls_free(desc);
    return 1;
}

static long tls_errno(int g, const char **why)
{
    *why = gnutls_strerror(g);
    if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
        return -EAGAIN;
    if (g == GNUTLS_E_MEMORY_ERROR)
        return -ENOMEM;
    return -EIO;
}

long nbd_tls_recv(struct nbd_conn *c, void *buf, size_t n, const char **why)
{
    /* A few non-fatal records (warnings) at a time: the loop comes back
     * for the rest (the socket, or GnuTLS's buffer, is still readable). */
    for (unsigned k = 0; k < 16; k++) {
        ssize_t g = gnutls_record_recv(c->tls_session, buf, n);
        if (g >= 0)
            return (long)g;
        /* The client's close without close_notify ends the stream too. */
        if (g == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        /* A TLS 1.2 renegotiation request is refused (an alert, not fatal);
         * other warnings are read past. */
        if (g == GNUTLS_E_REHANDSHAKE) {
            gnutls_alert_send(c->tls_session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
            continue;
        }
        if (g != GNUTLS_E_AGAIN && g != GNUTLS_E_INTERRUPTED && !gnutls_error_is_fatal((int)g))
            continue;
        return tls_errno((int)g, why);
    }
    *why = "warnings";
    return -EAGAIN;
}

long nbd_tls_send(struct nbd_conn *c, const void *buf, size_t n, const char **why)
{
    /* After GNUTLS_E_AGAIN GnuTLS wants the same call again: the reply at
     * the head of the queue stays the same until it is sent. */
    ssize_t g = gnutls_record_send(c->tls_session, buf, n < TLS_CHUNK ? n : TLS_CHUNK);
    if (g >= 0)
        return (long)g;
    return tls_errno((int)g, why);
}

bool nbd_tls_has_pending(struct nbd_conn *c)
{
    return c->tls_session && c->tls_state == NBD_TLS_UP &&
           gnutls_record_check_pending(c->tls_session) > 0;
}

void nbd_tls_end(struct nbd_conn *c, bool bye)
{
    if (!c->tls_session)
        return;
    if (bye && c->tls_state == NBD_TLS_UP && c->fd >= 0)
        gnutls_bye(c->tls_session, GNUTLS_SHUT_WR); /* non-blocking: at most tried */
    gnutls_deinit(c->tls_session);
    c->tls_session = NULL;
}
