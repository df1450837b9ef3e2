/* test_jsonv.c: strict JSON (src/base/jsonv.c). */
#include "base/bd.h"
#include "base/jsonv.h"
#include "tap.h"

#include <string.h>

static int parse(struct jsonv_doc *d, const char *text)
{
    return jsonv_parse(d, "t.json", text, strlen(text), 8);
}

/* Errors name the line of the offending value. */
TEST(line_numbers)
{
    struct jsonv_doc d;
    CHECK_EQ(parse(&d, "{\n \"a\": 1,\n \"b\": \"x\"\n}"), 0);
    uint64_t v;
    CHECK(jsonv_get_u64(&d, d.root, "", "b", true, 0, 10, &v) < 0);
    CHECK(strstr(d.err, "t.json:3:") != NULL);
    CHECK(strstr(d.err, "b:") != NULL);
    jsonv_free(&d);
}

/* Integers are exact past 2^53 and fractions, exponents, negatives fail. */
TEST(exact_integers)
{
    struct jsonv_doc d;
    CHECK_EQ(parse(&d, "{\"a\": 18446744073709551615, \"b\": 1.5, \"c\": 1e3, \"d\": -1,"
                       " \"e\": 9007199254740993}"),
             0);
    uint64_t v;
    CHECK_EQ(jsonv_get_u64(&d, d.root, "", "a", true, 0, UINT64_MAX, &v), 0);
    CHECK_EQ(v, UINT64_MAX);
    CHECK_EQ(jsonv_get_u64(&d, d.root, "", "e", true, 0, UINT64_MAX, &v), 0);
    CHECK_EQ(v, 9007199254740993ull);
    d.err[0] = 0;
    CHECK(jsonv_get_u64(&d, d.root, "", "b", true, 0, UINT64_MAX, &v) < 0);
    d.err[0] = 0;
    CHECK(jsonv_get_u64(&d, d.root, "", "c", true, 0, UINT64_MAX, &v) < 0);
    d.err[0] = 0;
    CHECK(jsonv_get_u64(&d, d.root, "", "d", true, 0, UINT64_MAX, &v) < 0);
    jsonv_free(&d);
}

/* Unknown and duplicate keys are both refused, naming the key. */
TEST(unknown_and_duplicate_keys)
{
    static const char *const keys[] = {"a", NULL};
    struct jsonv_doc d;
    CHECK_EQ(parse(&d, "{\"a\": 1, \"replicaton\": 3}"), 0);
    CHECK(jsonv_check_keys(&d, d.root, "", keys) < 0);
    CHECK(strstr(d.err, "replicaton") && strstr(d.err, "unknown key"));
    jsonv_free(&d);
    CHECK_EQ(parse(&d, "{\"a\": 1,\n\"a\": 2}"), 0);
    CHECK(jsonv_check_keys(&d, d.root, "", keys) < 0);
    CHECK(strstr(d.err, "duplicate key") && strstr(d.err, "t.json:2:"));
    jsonv_free(&d);
}

/* Nesting past the limit is refused before cJSON recurses on it. */
TEST(depth_limit)
{
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    struct jsonv_doc d;
    CHECK(jsonv_parse(&d, "t", deep, sizeof(deep), 8) < 0);
    CHECK(strstr(d.err, "nested") != NULL);
    jsonv_free(&d);
}

/* Trailing garbage, empty input, NUL escapes and bad UTF-8 are refused. */
TEST(malformed)
{
    struct jsonv_doc d;
    CHECK(parse(&d, "{} x") < 0);
    jsonv_free(&d);
    CHECK(parse(&d, "   ") < 0);
    CHECK(strstr(d.err, "empty") != NULL);
    jsonv_free(&d);
    CHECK(parse(&d, "{\"a\": \"x\\u0000y\"}") < 0);
    jsonv_free(&d);
    CHECK(parse(&d, "{\"a\": \"\xc3\x28\"}") < 0);
    jsonv_free(&d);
    CHECK(parse(&d, "{\"a\": 1,}") < 0);
    jsonv_free(&d);
}

/* Sizes accept integers and unit strings; types are named in errors. */
TEST(sizes_and_types)
{
    struct jsonv_doc d;
    CHECK_EQ(parse(&d, "{\"a\": \"64M\", \"b\": 4096, \"c\": true, \"d\": null}"), 0);
    uint64_t v;
    CHECK_EQ(jsonv_get_size(&d, d.root, "", "a", true, 0, UINT64_MAX, &v), 0);
    CHECK_EQ(v, 64ull << 20);
    CHECK_EQ(jsonv_get_size(&d, d.root, "", "b", true, 0, UINT64_MAX, &v), 0);
    CHECK_EQ(v, 4096);
    CHECK(jsonv_get_size(&d, d.root, "", "c", true, 0, UINT64_MAX, &v) < 0);
    CHECK(strstr(d.err, "a boolean") != NULL);
    d.err[0] = 0;
    const char *s;
    CHECK(jsonv_get_str(&d, d.root, "", "d", true, 0, 10, &s) < 0);
    CHECK(strstr(d.err, "null") != NULL);
    CHECK_EQ(jsonv_get_str(&d, d.root, "", "zz", false, 0, 10, &s), 1);
    jsonv_free(&d);
}
