/* test_log.c: src/runtime/log.c, the line formats (text and json). */
#include "runtime/log.h"
#include "tap.h"

#include <cjson/cJSON.h>
#include <string.h>

/* ---- Helpers ------------------------------------------------------------ */

static size_t fmt(char *buf, size_t len, enum log_format f, const struct log_ids *ids,
                  const char *msg)
{
    return log_format_line(buf, len, f, LOG_INFO, "proxy.1", ids, msg);
}

/* ---- text ----------------------------------------------------------------- */

/* A text line carries every id given, in a fixed order, then the message. */
TEST(text_ids)
{
    char buf[512];
    struct log_ids ids = {.vol = "vol0", .req = 7, .ship = 0xabc, .blob = 0x10,
                          .raft_index = 42};
    size_t n = fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, &ids, "committed");
    buf[n] = 0;
    CHECK(strstr(buf, " proxy.1 INFO vol=vol0 req=7 ship=0000000000000abc "
                      "blob=0000000000000010 raft_index=42 committed\n") != NULL);
    CHECK_EQ(buf[n - 1], '\n');
}

/* A control character from a peer cannot start a second line. */
TEST(text_no_forged_lines)
{
    char buf[512];
    struct log_ids ids = {.vol = "a\nb"};
    size_t n = fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, &ids, "x\n2026-01-01 forged");
    CHECK(memchr(buf, '\n', n - 1) == NULL);
    CHECK_EQ(buf[n - 1], '\n');
}

/* ---- json ----------------------------------------------------------------- */

/* A JSON line parses and holds the ids as typed fields; absent ids are
 * left out. */
TEST(json_fields)
{
    char buf[512];
    struct log_ids ids = {.vol = "vol\"0", .ship = 0x9f3c0a17d2e4b811ull, .raft_index = 42};
    size_t n = fmt(buf, sizeof(buf), LOG_FORMAT_JSON, &ids, "a \"quoted\"\tmessage");
    CHECK_EQ(buf[n - 1], '\n');
    buf[n - 1] = 0;
    cJSON *o = cJSON_Parse(buf);
    CHECK(o != NULL);
    CHECK(strcmp(cJSON_GetObjectItem(o, "tag")->valuestring, "proxy.1") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(o, "level")->valuestring, "info") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(o, "vol")->valuestring, "vol\"0") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(o, "ship")->valuestring, "9f3c0a17d2e4b811") == 0);
    CHECK_EQ(cJSON_GetObjectItem(o, "raft_index")->valuedouble, 42);
    CHECK(strcmp(cJSON_GetObjectItem(o, "msg")->valuestring, "a \"quoted\"\tmessage") == 0);
    CHECK(cJSON_GetObjectItem(o, "req") == NULL);
    CHECK(cJSON_GetObjectItem(o, "blob") == NULL);
    cJSON_Delete(o);
}

/* A message longer than the line is cut, and the line is still one
 * complete JSON object. */
TEST(json_truncated_still_valid)
{
    char msg[4000];
    memset(msg, '"', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = 0;
    char buf[300];
    size_t n = fmt(buf, sizeof(buf), LOG_FORMAT_JSON, NULL, msg);
    CHECK(n <= sizeof(buf));
    CHECK_EQ(buf[n - 1], '\n');
    buf[n - 1] = 0;
    cJSON *o = cJSON_Parse(buf);
    CHECK(o != NULL);
    CHECK(strlen(cJSON_GetObjectItem(o, "msg")->valuestring) > 10);
    cJSON_Delete(o);
}

/* The format names parse; others are refused. */
TEST(format_parse)
{
    enum log_format f;
    CHECK_EQ(log_format_parse("json", &f), 0);
    CHECK_EQ(f, LOG_FORMAT_JSON);
    CHECK_EQ(log_format_parse("text", &f), 0);
    CHECK_EQ(f, LOG_FORMAT_TEXT);
    CHECK(log_format_parse("JSON", &f) < 0);
    CHECK(log_format_parse("", &f) < 0);
}
