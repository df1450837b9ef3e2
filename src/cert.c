/* cert.c: `blockd cert`, the cluster's certificate authority on the
 * command line (quickstart and the ansible role use it; no openssl CLI,
 * no prompts).
 *
 *   blockd cert ca --dir DIR --cluster ID [--days N]
 *       a new CA: DIR/ca.pem (0644) and DIR/ca.key (0600).  Refuses to
 *       overwrite an existing CA (a new CA would orphan every certificate).
 *   blockd cert issue --ca DIR --role ROLE --id ID --out PREFIX
 *                     [--san DNS:NAME|IP:ADDR]... [--days N] [--from-days N]
 *       a node certificate: PREFIX.pem and PREFIX.key (0600).  ROLE is
 *       proxy, blob, agent or ctl, or client for an NBD client (the id a
 *       volume's attachment names); the identity URI blockd://CLUSTER/ROLE/ID
 *       (tls.h) goes in the subject alternative names, beside any DNS or IP
 *       names clients that check host names need (NBD clients, curl).
 *       --from-days moves the start of validity (negative: in the past;
 *       with a small --days that makes an expired certificate for tests).
 *   blockd cert show FILE
 *       the subject, identity, names and validity of a certificate.
 *
 * Keys are ECDSA P-256: small, fast to sign and verify in a handshake,
 * and accepted by GnuTLS (qemu, libnbd) and OpenSSL alike.  Every file is
 * written with util_write_file_atomic (fsync, rename, fsync of the
 * directory): a key that a power cut could lose would leave a node that
 * cannot join.  Serial numbers are 128 random bits.
 *
 * Exit status: 0 done, 1 failure (one line on stderr), 2 usage. */
#include "cert.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/tls.h"
#include "net/wire.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdarg.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERT_MAX_SANS 16
#define CERT_PEM_MAX (64u << 10)

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("blockd cert: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e) {
        char buf[200];
        ERR_error_string_n(e, buf, sizeof(buf));
        fprintf(stderr, " (%s)", buf);
    }
    fputc('\n', stderr);
    return 1;
}

static EVP_PKEY *key_new(void)
{
    return EVP_EC_gen("P-256");
}

/* PEM of K or X into a heap buffer, written atomically to PATH with MODE. */
static int write_pem(const char *path, EVP_PKEY *k, X509 *x, int mode)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return -ENOMEM;
    int ok = k ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
               : PEM_write_bio_X509(b, x);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    int rc = (ok == 1 && len > 0) ? util_write_file_atomic(path, data, (size_t)len, mode) : -EIO;
    BIO_free(b);
    return rc;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!e) return -EINVAL;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1 ? 0 : -ENOMEM;
}

/* An unsigned certificate for KEY named CN, valid from FROM_DAYS
 * (relative to now) for DAYS, issued by ISSUER (itself when NULL). */
static X509 *cert_make(EVP_PKEY *key, const char *cn, long from_days, long days, X509 *issuer)
{
    X509 *x = X509_new();
    if (!x) return NULL;
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    if (RAND_bytes(serial, sizeof(serial)) != 1) goto fail;
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) goto fail;
    BN_free(bn);
    bn = NULL;
    X509_set_version(x, 2); /* v3 */
    if (!X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400L - 300) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (from_days + days) * 86400L))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0))
        goto fail;
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (!X509_set_pubkey(x, key)) goto fail;
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* Add the N extensions EXTS (OpenSSL's config syntax; NULL skips) and sign
 * with ISSUER_KEY. */
static int sign_with_exts(X509 *x, X509 *issuer, EVP_PKEY *issuer_key, const char *const *exts,
                          const int *nids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (exts[i] && add_ext(x, issuer ? issuer : x, nids[i], exts[i]) < 0) return -EINVAL;
    return X509_sign(x, issuer_key, EVP_sha256()) ? 0 : -EINVAL;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- blockd cert ca ------------------------------------------------------- */

static int cmd_ca(int argc, char **argv)
{
    const char *dir = NULL, *cluster = NULL;
    long days = 3650;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"cluster", required_argument, NULL, 'c'},
                                         {"days", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'd') dir = optarg;
        else if (o == 'c') cluster = optarg;
        else if (o == 'n') days = strtol(optarg, NULL, 10);
        else return 2;
    }
    if (!dir || !cluster || days <= 0) {
        fprintf(stderr, "usage: blockd cert ca --dir DIR --cluster ID [--days N]\n");
        return 2;
    }
    char uri[160];
    if (tls_identity_uri(uri, sizeof(uri), cluster, WIRE_ROLE_CTL, "ca") < 0)
        return fail("cluster id \"%s\" is not [a-z0-9_-]{1,64}", cluster);
    char crt[4096], key[4096];
    snprintf(crt, sizeof(crt), "%s/ca.pem", dir);
    snprintf(key, sizeof(key), "%s/ca.key", dir);
    if (exists(crt) || exists(key))
        return fail("%s already holds a CA; refusing to replace it (every certificate it "
                    "signed would stop working)", dir);
    int rc = util_mkdir_p(dir, 0700);
    if (rc < 0) return fail("%s: %s", dir, bd_strerror(rc));
    EVP_PKEY *k = key_new();
    char cn[128];
    snprintf(cn, sizeof(cn), "blockd CA %s", cluster);
    X509 *x = k ? cert_make(k, cn, 0, days, NULL) : NULL;
    static const int nids[] = {NID_basic_constraints, NID_key_usage, NID_subject_key_identifier};
    const char *exts[] = {"critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign", "hash"};
    if (!x || sign_with_exts(x, NULL, k, exts, nids, 3) < 0) {
        EVP_PKEY_free(k);
        X509_free(x);
        return fail("cannot make the CA certificate");
    }
    rc = write_pem(key, k, NULL, 0600);
    if (rc == 0) rc = write_pem(crt, NULL, x, 0644);
    EVP_PKEY_free(k);
    X509_free(x);
    if (rc < 0) return fail("cannot write %s: %s", dir, bd_strerror(rc));
    printf("%s\n%s\n", crt, key);
    return 0;
}

/* ---- blockd cert issue ---------------------------------------------------- */

static int cmd_issue(int argc, char **argv)
{
    const char *ca_dir = NULL, *role_name = NULL, *id = NULL, *out = NULL;
    const char *sans[CERT_MAX_SANS];
    unsigned n_sans = 0;
    long days = 825, from_days = 0;
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'a'},   {"role", required_argument, NULL, 'r'},
        {"id", required_argument, NULL, 'i'},   {"out", required_argument, NULL, 'o'},
        {"san", required_argument, NULL, 's'},  {"days", required_argument, NULL, 'n'},
        {"from-days", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': ca_dir = optarg; break;
        case 'r': role_name = optarg; break;
        case 'i': id = optarg; break;
        case 'o': out = optarg; break;
        case 'n': days = strtol(optarg, NULL, 10); break;
        case 'f': from_days = strtol(optarg, NULL, 10); break;
        case 's':
            if (n_sans == CERT_MAX_SANS) return fail("at most %d --san", CERT_MAX_SANS);
            if (strncmp(optarg, "DNS:", 4) != 0 && strncmp(optarg, "IP:", 3) != 0)
                return fail("--san %s: expected DNS:NAME or IP:ADDRESS", optarg);
            sans[n_sans++] = optarg;
            break;
        default: return 2;
        }
    }
    if (!ca_dir || !role_name || !id || !out || days <= 0) {
        fprintf(stderr, "usage: blockd cert issue --ca DIR --role proxy|blob|agent|ctl|client "
                        "--id ID "
                        "--out PREFIX [--san DNS:NAME|IP:ADDR]... [--days N] [--from-days N]\n");
        return 2;
    }
    uint16_t role = tls_role_parse(role_name);
    if (!role) return fail("unknown role \"%s\" (proxy, blob, agent, ctl or client)", role_name);
    char capem[4096], cakey[4096];
    snprintf(capem, sizeof(capem), "%s/ca.pem", ca_dir);
    snprintf(cakey, sizeof(cakey), "%s/ca.key", ca_dir);
    X509 *ca = read_cert(capem);
    if (!ca) return fail("cannot read the CA certificate %s", capem);
    char why[256];
    if (util_check_private_file(cakey, why, sizeof(why)) < 0) {
        X509_free(ca);
        return fail("%s", why);
    }
    EVP_PKEY *cak = read_key(cakey);
    if (!cak) {
        X509_free(ca);
        return fail("cannot read the CA key %s", cakey);
    }
    /* The cluster is the CA's: take it from its subject ("blockd CA X"). */
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn));
    const char *cluster = strncmp(cn, "blockd CA ", 10) == 0 ? cn + 10 : NULL;
    char uri[200];
    int rc = cluster ? tls_identity_uri(uri, sizeof(uri), cluster, role, id) : -EINVAL;
    if (rc < 0) {
        X509_free(ca);
        EVP_PKEY_free(cak);
        return fail(cluster ? "id \"%s\" is not valid for role %s (nodes: digits; agents: "
                              "[A-Za-z0-9._-]{1,64})"
                            : "%s/%s: the CA was not made by blockd cert ca",
                    id, role_name);
    }
    char san[2048];
    int len = snprintf(san, sizeof(san), "URI:%s", uri);
    for (unsigned i = 0; i < n_sans && len < (int)sizeof(san); i++)
        len += snprintf(san + len, sizeof(san) - (size_t)len, ",%s", sans[i]);
    char subject[512];
    snprintf(subject, sizeof(subject), "%s-%s.%s", role_name, id, cluster);
    EVP_PKEY *k = key_new();
    X509 *x = k ? cert_make(k, subject, from_days, days, ca) : NULL;
    static const int nids[] = {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                               NID_subject_key_identifier, NID_authority_key_identifier,
                               NID_subject_alt_name};
    const char *exts[] = {"critical,CA:FALSE", "critical,digitalSignature,keyEncipherment",
                          "serverAuth,clientAuth", "hash", "keyid,issuer", san};
    rc = (x && sign_with_exts(x, ca, cak, exts, nids, 6) == 0) ? 0 : -EINVAL;
    char path_key[4096], path_crt[4096];
    snprintf(path_key, sizeof(path_key), "%s.key", out);
    snprintf(path_crt, sizeof(path_crt), "%s.pem", out);
    if (rc == 0) rc = write_pem(path_key, k, NULL, 0600);
    if (rc == 0) rc = write_pem(path_crt, NULL, x, 0644);
    X509_free(ca);
    X509_free(x);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(k);
    if (rc < 0) return fail("cannot make %s: %s", out, bd_strerror(rc));
    printf("%s\n%s\n", path_crt, path_key);
    return 0;
}

/* ---- blockd cert show ----------------------------------------------------- */

static int cmd_show(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: blockd cert show FILE\n");
        return 2;
    }
    X509 *x = read_cert(argv[1]);
    if (!x) return fail("cannot read a certificate from %s", argv[1]);
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
    printf("subject:   %s\n", buf);
    X509_NAME_oneline(X509_get_issuer_name(x), buf, sizeof(buf));
    printf("issuer:    %s\n", buf);
    struct tls_identity id;
    int rc = tls_identity_of_cert(x, &id);
    if (rc == 0)
        printf("identity:  cluster %s, role %s, id %s\n", id.cluster, tls_role_name(id.role),
               id.id);
    else
        printf("identity:  %s\n", rc == -ENOENT ? "none" : "malformed or ambiguous");
    BIO *b = BIO_new_fp(stdout, BIO_NOCLOSE);
    if (b) {
        BIO_printf(b, "notBefore: ");
        ASN1_TIME_print(b, X509_get0_notBefore(x));
        BIO_printf(b, "\nnotAfter:  ");
        ASN1_TIME_print(b, X509_get0_notAfter(x));
        BIO_printf(b, "\n");
        GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
            BIO_printf(b, "name:      ");
            GENERAL_NAME_print(b, sk_GENERAL_NAME_value(names, i));
            BIO_printf(b, "\n");
        }
        GENERAL_NAMES_free(names);
        BIO_free(b);
    }
    X509_free(x);
    return 0;
}

int cert_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: blockd cert ca --dir DIR --cluster ID [--days N]\n"
                "       blockd cert issue --ca DIR --role proxy|blob|agent|ctl|client --id ID "
                "--out PREFIX\n"
                "                         [--san DNS:NAME|IP:ADDR]... [--days N] "
                "[--from-days N]\n"
                "       blockd cert show FILE\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "ca") == 0) return cmd_ca(argc - 1, argv + 1);
    if (strcmp(argv[1], "issue") == 0) return cmd_issue(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0) return cmd_show(argc - 1, argv + 1);
    fprintf(stderr, "blockd cert: unknown command \"%s\"\n", argv[1]);
    return 2;
}
