/*
 * test_server.c — the model-free half of the server (src/server/srv_json.c):
 * request validation, error/response JSON, SSE chunks, UTF-8 cleaning and
 * stop strings. The HTTP behaviour with a model is tests/py/test_server.py.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "server/srv_json.h"

static int parse(const char *body, int kind, srv_request *r, srv_error *e) {
    return srv_parse_request(body, strlen(body), kind, r, e);
}

/* Expect a 400 naming param (NULL: any). */
static void expect_400(const char *body, int kind, const char *param) {
    srv_request r;
    srv_error e;
    int rc = parse(body, kind, &r, &e);
    CHECK(rc < 0 && e.status == 400, "%s -> rc %d status %d", body, rc, e.status);
    if (rc < 0 && param) CHECK(e.param && !strcmp(e.param, param), "%s -> param %s", body, e.param ? e.param : "(null)");
    srv_request_free(&r);
}

static void test_parse(void) {
    srv_request r;
    srv_error e;
    const char *ok = "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"he\"},{\"type\":\"text\",\"text\":\"llo\"}]}],"
                     "\"max_tokens\":5,\"temperature\":0,\"top_p\":0.9,\"top_k\":3,\"min_p\":0.1,\"seed\":42,"
                     "\"stop\":[\"a\",\"\",\"bc\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"n\":1,\"unknown_field\":[1,2]}";
    CHECK(parse(ok, SRV_CHAT, &r, &e) == 0, "valid chat request: %s", e.message);
    CHECK(r.n_msgs == 2 && !strcmp(r.msgs[1].content, "hello") && !strcmp(r.msgs[0].role, "system"), "messages");
    CHECK(r.max_tokens == 5 && r.temperature == 0.0f && fabsf(r.top_p - 0.9f) < 1e-6 && r.top_k == 3, "numbers");
    CHECK(r.has_seed && r.seed == 42, "seed");
    CHECK(r.n_stop == 2 && !strcmp(r.stop[1], "bc"), "stop array (empty dropped): %d", r.n_stop);
    CHECK(r.stream && r.include_usage, "stream flags");
    CHECK(!strcmp(r.model, "x"), "model");
    srv_request_free(&r);

    CHECK(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":7,\"stop\":\"END\"}",
                SRV_CHAT, &r, &e) == 0, "max_completion_tokens");
    CHECK(r.max_tokens == 7 && r.n_stop == 1 && isnan(r.temperature) && r.top_k == -1 && !r.stream, "defaults");
    srv_request_free(&r);

    CHECK(parse("{\"prompt\":\"abc\"}", SRV_COMPLETION, &r, &e) == 0 && !strcmp(r.prompt, "abc") && r.max_tokens == -1,
          "completion prompt");
    srv_request_free(&r);
    CHECK(parse("{\"prompt\":[\"abc\"]}", SRV_COMPLETION, &r, &e) == 0 && !strcmp(r.prompt, "abc"), "prompt [str]");
    srv_request_free(&r);

    expect_400("", SRV_CHAT, NULL);
    expect_400("{", SRV_CHAT, NULL);
    expect_400("[1,2]", SRV_CHAT, NULL);
    expect_400("{\"model\":\"x\"}", SRV_CHAT, "messages");
    expect_400("{\"messages\":\"hi\"}", SRV_CHAT, "messages");
    expect_400("{\"messages\":[]}", SRV_CHAT, "messages");
    expect_400("{\"messages\":[{\"content\":\"hi\"}]}", SRV_CHAT, "messages");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", SRV_CHAT, "messages");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", SRV_CHAT, "messages");
    const char *m = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],";
    char buf[512];
    const char *bad[][2] = {
        {"\"n\":2}", "n"}, {"\"max_tokens\":\"5\"}", "max_tokens"}, {"\"max_tokens\":0}", "max_tokens"},
        {"\"max_tokens\":1.5}", "max_tokens"}, {"\"temperature\":\"hot\"}", "temperature"},
        {"\"temperature\":3}", "temperature"}, {"\"top_p\":1.5}", "top_p"}, {"\"top_k\":-2}", "top_k"},
        {"\"stream\":\"yes\"}", "stream"}, {"\"stop\":5}", "stop"}, {"\"stop\":[\"a\",1]}", "stop"},
        {"\"stream_options\":true}", "stream_options"}, {"\"seed\":\"x\"}", "seed"}, {"\"model\":7}", "model"},
        {"\"presence_penalty\":9}", "presence_penalty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", m, bad[i][0]);
        expect_400(buf, SRV_CHAT, bad[i][1]);
    }
    expect_400("{\"prompt\":5}", SRV_COMPLETION, "prompt");
    expect_400("{}", SRV_COMPLETION, "prompt");

    char *content;
    bool as, ps, wp;
    CHECK(srv_parse_tokenize("{\"content\":\"hi\",\"with_pieces\":true}", 35, &content, &as, &ps, &wp, &e) == 0 &&
              !strcmp(content, "hi") && wp && !as && ps,
          "tokenize parse");
    free(content);
    CHECK(srv_parse_tokenize("{\"content\":1}", 13, &content, &as, &ps, &wp, &e) < 0 && e.status == 400, "tokenize bad");
    int32_t *t;
    int n;
    CHECK(srv_parse_detokenize("{\"tokens\":[1,2,3]}", 18, &t, &n, &e) == 0 && n == 3 && t[2] == 3, "detokenize");
    free(t);
    CHECK(srv_parse_detokenize("{\"tokens\":[1,\"x\"]}", 18, &t, &n, &e) < 0 && e.status == 400, "detokenize bad");
}

static void test_json_out(void) {
    srv_error e;
    srv_err(&e, 400, NULL, "context_length_exceeded", "messages", "too long: %d", 9);
    char *s = srv_error_json(&e);
    json_t *j = json_loads(s, 0, NULL);
    json_t *err = json_object_get(j, "error");
    CHECK(err && !strcmp(json_string_value(json_object_get(err, "type")), "invalid_request_error") &&
              !strcmp(json_string_value(json_object_get(err, "code")), "context_length_exceeded") &&
              !strcmp(json_string_value(json_object_get(err, "message")), "too long: 9"),
          "error json: %s", s);
    json_decref(j);
    free(s);
    srv_err(&e, 400, NULL, NULL, NULL, "bad bytes \xff\xfe here");
    s = srv_error_json(&e);
    CHECK(s && strstr(s, "bad bytes"), "error json with invalid UTF-8 message");
    free(s);

    srv_result r = {SRV_CHAT, "chatcmpl-1", "m", 123, "hi \xe2\x82\xac", 6, "length", 4, 2};
    s = srv_json_result(&r);
    j = json_loads(s, 0, NULL);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion"), "object");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "hi \xe2\x82\xac"),
          "content");
    CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"), "finish");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")) == 6, "usage");
    json_decref(j);
    free(s);

    srv_buf b = {0};
    CHECK(srv_sse_chunk(&b, &r, "x", 1, true, NULL) == 0, "chunk");
    CHECK(!strncmp(b.p, "data: {", 7) && !strcmp(b.p + b.n - 2, "\n\n") && strstr(b.p, "\"role\":\"assistant\"") &&
              strstr(b.p, "chat.completion.chunk"),
          "chunk shape: %s", b.p);
    b.n = 0;
    r.kind = SRV_COMPLETION;
    srv_sse_usage(&b, &r);
    CHECK(strstr(b.p, "\"choices\":[]") && strstr(b.p, "\"completion_tokens\":2"), "usage chunk: %s", b.p);
    srv_buf_free(&b);
}

static void test_text(void) {
    srv_buf b = {0};
    /* complete ASCII + euro sign, then a split euro */
    long k = srv_utf8_clean("a\xe2\x82\xac", 4, false, &b);
    CHECK(k == 4 && b.n == 4, "clean complete");
    b.n = 0;
    k = srv_utf8_clean("a\xe2\x82", 3, false, &b);
    CHECK(k == 1 && b.n == 1 && b.p[0] == 'a', "incomplete tail held: k=%ld n=%zu", k, b.n);
    b.n = 0;
    k = srv_utf8_clean("a\xe2\x82", 3, true, &b);
    CHECK(k == 3 && b.n == 4 && !memcmp(b.p, "a\xef\xbf\xbd", 4), "flush -> U+FFFD");
    b.n = 0;
    k = srv_utf8_clean("\xff" "b\xc0\x80", 4, false, &b);
    CHECK(k == 4 && b.n == 3 + 1 + 3 + 3 && !memcmp(b.p, "\xef\xbf\xbd" "b", 4), "invalid bytes replaced (n=%zu)", b.n);
    b.n = 0;
    k = srv_utf8_clean("\xed\xa0\x80", 3, false, &b); /* surrogate */
    CHECK(k == 3 && b.n == 9, "surrogate replaced per byte");
    srv_buf_free(&b);

    char *stops[] = {"END", "\n\n"};
    size_t hold;
    CHECK(srv_stop_find("hello EN", 8, stops, 2, &hold) == -1 && hold == 2, "partial stop held: %zu", hold);
    CHECK(srv_stop_find("hello ENDx", 10, stops, 2, &hold) == 6 && hold == 0, "stop found");
    CHECK(srv_stop_find("a\n\nEND", 6, stops, 2, &hold) == 1, "earliest stop wins");
    CHECK(srv_stop_find("hello", 5, stops, 2, &hold) == -1 && hold == 0, "no stop");
    CHECK(srv_stop_find("x\n", 2, stops, 2, &hold) == -1 && hold == 1, "newline prefix held");
    CHECK(srv_stop_find("", 0, stops, 2, &hold) == -1 && hold == 0, "empty text");
    CHECK(srv_stop_find("abc", 3, stops, 0, &hold) == -1 && hold == 0, "no stops");
}

int main(void) {
    test_parse();
    test_json_out();
    test_text();
    return check_done();
}
