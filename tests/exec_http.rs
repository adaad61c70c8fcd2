//! The HTTP executors against a real HTTP server on 127.0.0.1 speaking the exact wire
//! formats: `OpenAI` Chat Completions (SSE `data:` lines, `[DONE]`) and Anthropic Messages
//! (`event:` + `data:` lines): answers with tool calls, reasoning, truncation and cached
//! usage; per-backend settings; errors classified and naming backend and URL; requests on
//! dropped keep-alive connections resent; stalls; a private CA over real TLS; proxies.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck::config::{BackendConfig, HeaderSource, HttpBackend, ProxyMode, SimBackend};
use flightdeck::event::{OutputStream, TokenUsage};
use flightdeck::exec::anthropic::AnthropicExecutor;
use flightdeck::exec::env::EnvSource;
use flightdeck::exec::openai::OpenAiExecutor;
use flightdeck::exec::{self, ExecError, ExecOutcome, ExecRequest, Executor, OutputSink, ToolCall};
use rstest::rstest;
use serde_json::{Value, json};
use support::{ConnectionMode, FakeServer, Reply, TlsIdentity};
use tokio_util::sync::CancellationToken;

const KEY_ENV: &str = "FLIGHTDECK_TEST_API_KEY";
const KEY: &str = "sk-test-very-secret-4242";
/// The backend name every error must carry.
const BACKEND: &str = "test-backend";

#[derive(Debug, Clone, Copy)]
enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    fn config(self, url: &str, stream: bool, key_env: Option<&str>) -> HttpBackend {
        let base_url = match self {
            Api::OpenAi => format!("{url}/v1"),
            Api::Anthropic => url.to_owned(),
        };
        HttpBackend {
            api_key_env: key_env.map(str::to_owned),
            stream,
            max_tokens: 321,
            temperature: Some(0.25),
            ..HttpBackend::new(base_url, Some("default-model"))
        }
    }

    fn executor(self, url: &str, stream: bool, key_env: Option<&str>) -> Arc<dyn Executor> {
        self.build(self.config(url, stream, key_env), EnvSource::fixed([(KEY_ENV, KEY)]))
    }

    fn build(self, config: HttpBackend, env: EnvSource) -> Arc<dyn Executor> {
        self.try_build(config, env).unwrap()
    }

    fn try_build(
        self,
        config: HttpBackend,
        env: EnvSource,
    ) -> Result<Arc<dyn Executor>, ExecError> {
        Ok(match self {
            Api::OpenAi => Arc::new(OpenAiExecutor::with_env(BACKEND, config, env)?),
            Api::Anthropic => Arc::new(AnthropicExecutor::with_env(BACKEND, config, env)?),
        })
    }

    fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    fn success(self, text: &str) -> Value {
        match self {
            Api::OpenAi => json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
            }),
            Api::Anthropic => json!({
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "output_tokens": 7}
            }),
        }
    }

    /// A whole event stream delivering `pieces`, with usage 12 in / 7 out.
    fn stream(self, pieces: &[&str]) -> String {
        match self {
            Api::OpenAi => {
                let mut body = String::from(
                    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
                );
                for piece in pieces {
                    let chunk =
                        json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": piece}}]});
                    let _ = write!(body, "data: {chunk}\n\n");
                }
                body.push_str("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
                body.push_str("data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n");
                body.push_str("data: [DONE]\n\n");
                body
            }
            Api::Anthropic => {
                let mut body = String::from(
                    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\r\n\r\n\
                     event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
                     event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n",
                );
                for piece in pieces {
                    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
                    let _ = write!(body, "event: content_block_delta\r\ndata: {delta}\r\n\r\n");
                }
                body.push_str(
                    "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n\
                     event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\r\n\r\n\
                     event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
                );
                body
            }
        }
    }

    fn error_body(self, message: &str) -> Value {
        match self {
            Api::OpenAi => {
                json!({"error": {"message": message, "type": "invalid_request_error", "code": null}})
            }
            Api::Anthropic => {
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
            }
        }
    }

    fn check_key_header(self, request: &support::Recorded) {
        match self {
            Api::OpenAi => {
                assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
                assert_eq!(request.header("x-api-key"), None);
            }
            Api::Anthropic => {
                assert_eq!(request.header("x-api-key"), Some(KEY));
                assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(request.header("authorization"), None);
            }
        }
    }
}

fn request(timeout: Duration) -> ExecRequest {
    ExecRequest {
        run: "r-test".into(),
        task: "design".into(),
        agent: "backend-architect".into(),
        attempt: 1,
        system_prompt: "You design backends.".into(),
        task_description: "Design the orders API".into(),
        context: json!({"dependencies": {"research": "use postgres"}}),
        timeout,
        project_dir: PathBuf::from("."),
        model: Some("agent-model".into()),
        tools: Vec::new(),
        workdir: None,
    }
}

type Seen = Arc<Mutex<Vec<(OutputStream, String)>>>;

fn sink() -> (OutputSink, Seen) {
    let seen: Seen = Arc::default();
    let store = Arc::clone(&seen);
    (Arc::new(move |stream, text| store.lock().unwrap().push((stream, text))), seen)
}

async fn run(
    executor: &Arc<dyn Executor>,
    timeout: Duration,
) -> (Result<ExecOutcome, ExecError>, Seen) {
    run_request(executor, request(timeout)).await
}

async fn run_request(
    executor: &Arc<dyn Executor>,
    req: ExecRequest,
) -> (Result<ExecOutcome, ExecError>, Seen) {
    let (sink, seen) = sink();
    let result = executor.execute(req, sink, CancellationToken::new()).await;
    (result, seen)
}

/// The error, checked to name the backend and the URL it called.
fn named_error(error: &ExecError, api: Api, url: &str) -> ExecError {
    let text = error.to_string();
    assert!(text.contains(&format!("backend `{BACKEND}`")), "{text}");
    assert!(text.contains(&format!("{url}{}", api.path())), "{text}");
    error.cause().clone()
}

fn streamed(seen: &Seen, wanted: OutputStream) -> Vec<String> {
    seen.lock().unwrap().iter().filter(|(s, _)| *s == wanted).map(|(_, t)| t.clone()).collect()
}

const USAGE: TokenUsage = TokenUsage {
    input_tokens: 12,
    output_tokens: 7,
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: 0,
};
const LONG: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- answers

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn streaming_success_streams_tokens_and_records_usage(#[case] api: Api) {
    let server =
        FakeServer::start(vec![Reply::sse(&api.stream(&["Use ", "a queue", " — and é"]))]).await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Use a queue — and é");
    assert_eq!(outcome.usage, Some(USAGE));
    assert!(outcome.details.is_empty(), "{:?}", outcome.details);
    let tokens: Vec<(OutputStream, String)> = seen.lock().unwrap().clone();
    assert_eq!(
        tokens,
        ["Use ", "a queue", " — and é"].map(|t| (OutputStream::Tokens, t.to_owned())).to_vec()
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", api.path()));
    api.check_key_header(sent);
    let body = sent.json();
    assert_eq!(body["model"], "agent-model", "the agent's own model id overrides the backend's");
    assert_eq!(body["max_tokens"], 321);
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["stream"], true);
    for unset in
        ["top_p", "stop", "stop_sequences", "seed", "response_format", "max_completion_tokens"]
    {
        assert!(body.get(unset).is_none(), "{unset} sent unasked: {body}");
    }
    let user = "Design the orders API\n\nContext:\n{\n  \"dependencies\": {\n    \"research\": \"use postgres\"\n  }\n}";
    match api {
        Api::OpenAi => {
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
            assert_eq!(
                body["messages"],
                json!([{"role": "system", "content": "You design backends."}, {"role": "user", "content": user}])
            );
        }
        Api::Anthropic => {
            assert_eq!(body["system"], "You design backends.");
            assert_eq!(body["messages"], json!([{"role": "user", "content": user}]));
        }
    }
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn non_streaming_success_records_usage(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("Done: schema v2"))]).await;
    let executor = api.executor(&server.url, false, Some(KEY_ENV));
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Done: schema v2");
    assert_eq!(outcome.usage, Some(USAGE));
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![(OutputStream::Tokens, "Done: schema v2".to_owned())]
    );
    let sent = &server.requests()[0];
    assert_eq!(sent.json()["stream"], false);
    assert!(sent.json().get("stream_options").is_none());
    api.check_key_header(sent);
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn a_server_that_ignores_stream_true_is_read_whole(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("all at once"))]).await;
    let executor = api.executor(&server.url, true, None);
    let (result, seen) = run(&executor, LONG).await;
    assert_eq!(result.unwrap().output, "all at once");
    assert_eq!(streamed(&seen, OutputStream::Tokens), ["all at once"]);
    assert_eq!(server.requests()[0].json()["stream"], true);
}

/// `OpenAI` streams tool calls as pieces keyed by `index`: the first names the call, the
/// rest append to its arguments.
const OPENAI_TOOL_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_def\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":20,\"total_tokens\":100}}\n\n",
    "data: [DONE]\n\n",
);

/// Anthropic streams a thinking block, a text block and a `tool_use` block whose input
/// arrives as `input_json_delta` pieces; the prompt was partly read from the cache.
const ANTHROPIC_TOOL_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":42,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"the weather.\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test]
async fn openai_tool_calls_are_assembled_across_chunks() {
    let server = FakeServer::start(vec![Reply::sse(OPENAI_TOOL_STREAM)]).await;
    let executor = Api::OpenAi.executor(&server.url, true, None);
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "");
    let calls = outcome.details.tool_calls;
    assert_eq!(
        calls,
        vec![
            ToolCall {
                id: Some("call_abc".into()),
                name: "get_weather".into(),
                input: "{\"city\":\"Paris\"}".into()
            },
            ToolCall { id: Some("call_def".into()), name: "get_time".into(), input: "{}".into() },
        ]
    );
    assert_eq!(
        streamed(&seen, OutputStream::ToolCall),
        ["get_weather {\"city\":\"Paris\"}", "get_time {}"]
    );
    assert!(streamed(&seen, OutputStream::Tokens).is_empty());
    assert_eq!(outcome.usage, Some(TokenUsage::new(80, 20)));
}

#[tokio::test]
async fn anthropic_tool_use_thinking_and_cache_usage() {
    let server = FakeServer::start(vec![Reply::sse(ANTHROPIC_TOOL_STREAM)]).await;
    let executor = Api::Anthropic.executor(&server.url, true, None);
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Checking.", "thinking never reaches the output");
    assert_eq!(outcome.details.reasoning.as_deref(), Some("The user wants the weather."));
    assert_eq!(
        outcome.details.tool_calls,
        vec![ToolCall {
            id: Some("toolu_01".into()),
            name: "get_weather".into(),
            input: "{\"city\": \"Paris\"}".into()
        }]
    );
    assert_eq!(streamed(&seen, OutputStream::Reasoning), ["The user wants ", "the weather."]);
    assert_eq!(streamed(&seen, OutputStream::Tokens), ["Checking."]);
    assert_eq!(streamed(&seen, OutputStream::ToolCall), ["get_weather {\"city\": \"Paris\"}"]);
    assert!(!outcome.details.truncated);
    // 5 uncached + 42 read from the cache: a warm run reports the prompt's full size.
    assert_eq!(
        outcome.usage,
        Some(TokenUsage {
            input_tokens: 47,
            output_tokens: 20,
            cache_read_input_tokens: 42,
            cache_creation_input_tokens: 0
        })
    );
}

#[tokio::test]
async fn anthropic_non_streaming_blocks_and_cache_creation() {
    let body = json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Plan first.", "signature": "abc"},
            {"type": "text", "text": "Here is the plan"},
            {"type": "tool_use", "id": "toolu_9", "name": "write_file", "input": {"path": "a.md"}}
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 3, "cache_creation_input_tokens": 44, "cache_read_input_tokens": 0, "output_tokens": 321}
    });
    let server = FakeServer::start(vec![Reply::json(200, &body)]).await;
    let executor = Api::Anthropic.executor(&server.url, false, None);
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Here is the plan");
    assert!(outcome.details.truncated);
    assert_eq!(outcome.details.reasoning.as_deref(), Some("Plan first."));
    assert_eq!(outcome.details.tool_calls[0].input, "{\"path\":\"a.md\"}");
    assert_eq!(streamed(&seen, OutputStream::ToolCall), ["write_file {\"path\":\"a.md\"}"]);
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.cache_creation_input_tokens), (47, 44));
}

#[tokio::test]
async fn openai_reasoning_content_is_kept_apart_and_length_is_truncation() {
    let mut body = String::new();
    for delta in [
        json!({"role": "assistant", "content": null, "reasoning_content": "Think "}),
        json!({"reasoning_content": "hard."}),
        json!({"content": "Answer"}),
        json!({"content": " cut"}),
    ] {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
        let _ = write!(body, "data: {chunk}\n\n");
    }
    body.push_str("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
    body.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":9,\"prompt_tokens_details\":{\"cached_tokens\":32}}}\n\n");
    body.push_str("data: [DONE]\n\n");
    let server = FakeServer::start(vec![Reply::sse(&body)]).await;
    let executor = Api::OpenAi.executor(&server.url, true, None);
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Answer cut");
    assert!(outcome.details.truncated);
    assert_eq!(outcome.details.reasoning.as_deref(), Some("Think hard."));
    assert_eq!(streamed(&seen, OutputStream::Reasoning), ["Think ", "hard."]);
    assert_eq!(streamed(&seen, OutputStream::Tokens), ["Answer", " cut"]);
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.cache_read_input_tokens), (50, 32));
}

#[tokio::test]
async fn openai_non_streaming_tool_call_reply_is_not_an_empty_success() {
    let body = json!({
        "id": "c", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "reasoning_content": "Need data.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"orders\"}"}}]
        }}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    });
    let server = FakeServer::start(vec![Reply::json(200, &body)]).await;
    let executor = Api::OpenAi.executor(&server.url, false, None);
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "");
    assert_eq!(outcome.details.tool_calls.len(), 1);
    assert_eq!(outcome.details.tool_calls[0].name, "search");
    assert_eq!(outcome.details.reasoning.as_deref(), Some("Need data."));
    assert_eq!(streamed(&seen, OutputStream::ToolCall), ["search {\"q\":\"orders\"}"]);
}

// ---------------------------------------------------------------- settings

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn sampling_settings_and_headers_are_sent(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("ok"))]).await;
    let mut headers = BTreeMap::new();
    headers.insert("X-Org".to_owned(), HeaderSource::Env { env: "ORG_ID".into() });
    headers.insert("X-Title".to_owned(), HeaderSource::Text("Flightdeck".into()));
    let config = HttpBackend {
        max_completion_tokens: Some(2048),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        seed: Some(42),
        response_format: Some(json!({"type": "json_object"})),
        headers,
        ..api.config(&server.url, false, Some(KEY_ENV))
    };
    let env = EnvSource::fixed([(KEY_ENV, KEY), ("ORG_ID", "org-77")]);
    let (result, _) = run(&api.build(config, env), LONG).await;
    result.unwrap();
    let sent = &server.requests()[0];
    let body = sent.json();
    assert_eq!(sent.header("x-org"), Some("org-77"));
    assert_eq!(sent.header("x-title"), Some("Flightdeck"));
    assert_eq!(body["top_p"], json!(0.9f32));
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    match api {
        Api::OpenAi => {
            assert_eq!(body["max_completion_tokens"], 2048);
            assert!(body.get("max_tokens").is_none(), "{body}");
            assert_eq!(body["stop"], json!(["END"]));
            assert_eq!(body["seed"], 42);
        }
        Api::Anthropic => {
            assert_eq!(body["max_tokens"], 2048);
            assert_eq!(body["stop_sequences"], json!(["END"]));
        }
    }
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn header_values_from_the_environment_are_redacted_and_required(#[case] api: Api) {
    let echo = "org org-secret-77 is not allowed";
    let server = FakeServer::start(vec![Reply::json(403, &api.error_body(echo))]).await;
    let mut headers = BTreeMap::new();
    headers.insert("X-Org".to_owned(), HeaderSource::Env { env: "ORG_ID".into() });
    let config = HttpBackend { headers: headers.clone(), ..api.config(&server.url, false, None) };
    let env = EnvSource::fixed([("ORG_ID", "org-secret-77")]);
    let (result, _) = run(&api.build(config, env), LONG).await;
    let error = result.unwrap_err();
    assert!(!error.to_string().contains("org-secret-77"), "{error}");
    assert!(error.to_string().contains("org *** is not allowed"), "{error}");

    let config = HttpBackend { headers, ..api.config(&server.url, false, None) };
    let (result, _) = run(&api.build(config, EnvSource::fixed([("OTHER", "x")])), LONG).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("`ORG_ID` for header `X-Org` is not set"), "{error}");
    assert_eq!(server.requests().len(), 1, "no request without the header");
}

#[rstest]
#[case(Api::OpenAi, Some("qwen2.5-coder"), "qwen2.5-coder")]
#[case(Api::Anthropic, Some("qwen2.5-coder"), "qwen2.5-coder")]
#[case(Api::Anthropic, None, "claude-sonnet-4-5")]
#[case(Api::Anthropic, Some("from-agent"), "claude-sonnet-4-5")]
#[tokio::test]
async fn a_claude_code_alias_never_replaces_the_backend_model(
    #[case] api: Api,
    #[case] configured: Option<&str>,
    #[case] sent: &str,
) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("ok"))]).await;
    let config = HttpBackend {
        model: configured.map(str::to_owned),
        ..api.config(&server.url, false, None)
    };
    let executor = api.build(config, EnvSource::fixed([("X", "y")]));
    let req = ExecRequest { model: Some("sonnet".into()), ..request(LONG) };
    let (result, _) = run_request(&executor, req).await;
    result.unwrap();
    assert_eq!(server.requests()[0].json()["model"], sent);
}

#[tokio::test]
async fn no_model_anywhere_is_a_configuration_error() {
    let server = FakeServer::start(vec![]).await;
    let config = HttpBackend { model: None, ..Api::OpenAi.config(&server.url, false, None) };
    let executor = Api::OpenAi.build(config, EnvSource::fixed([("X", "y")]));
    let req = ExecRequest { model: Some("sonnet".into()), ..request(LONG) };
    let (result, _) = run_request(&executor, req).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent());
    assert!(error.to_string().contains(&format!("backends.{BACKEND}.model")), "{error}");
    assert!(server.requests().is_empty());
}

// ---------------------------------------------------------------- errors, classified

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn rate_limit_fails_at_once_carrying_retry_after(#[case] api: Api) {
    let server = FakeServer::start(vec![
        Reply::json(429, &api.error_body("slow down")).with_header("retry-after", "120"),
    ])
    .await;
    let executor = api.executor(&server.url, false, Some(KEY_ENV));
    let started = Instant::now();
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(started.elapsed() < LONG / 2, "slept: {:?}", started.elapsed());
    assert_eq!(server.requests().len(), 1, "the executor never retries on its own");
    assert!(!error.is_permanent());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(
        named_error(&error, api, &server.url),
        ExecError::Http {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(error.to_string().contains("HTTP 429: slow down (Retry-After: 2m)"), "{error}");
}

#[rstest]
#[case(Api::OpenAi, 500)]
#[case(Api::OpenAi, 503)]
#[case(Api::OpenAi, 408)]
#[case(Api::Anthropic, 500)]
#[case(Api::Anthropic, 529)]
#[tokio::test]
async fn server_errors_are_transient(#[case] api: Api, #[case] status: u16) {
    let server = FakeServer::start(vec![Reply::json(status, &api.error_body("busy"))]).await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(!error.is_permanent(), "{error}");
    assert_eq!(error.http_status(), Some(status));
    assert_eq!(server.requests().len(), 1);
}

#[rstest]
#[case(Api::OpenAi, 400, "check the backend's settings (model `agent-model`")]
#[case(Api::Anthropic, 422, "check the backend's settings (model `agent-model`")]
#[case(Api::OpenAi, 401, "check that FLIGHTDECK_TEST_API_KEY holds a valid key")]
#[case(Api::Anthropic, 403, "check that FLIGHTDECK_TEST_API_KEY holds a valid key")]
#[case(Api::Anthropic, 404, "check base_url and that the server has the model `agent-model`")]
#[tokio::test]
async fn permanent_errors_name_backend_url_and_fix(
    #[case] api: Api,
    #[case] status: u16,
    #[case] hint: &str,
) {
    let server = FakeServer::start(vec![Reply::json(status, &api.error_body("refused"))]).await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent(), "{error}");
    let cause = named_error(&error, api, &server.url);
    assert!(matches!(&cause, ExecError::Http { status: s, .. } if *s == status), "{cause:?}");
    let text = error.to_string();
    assert!(text.contains(&format!("HTTP {status}: refused — ")), "{text}");
    assert!(text.contains(hint), "{text}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_base_url_without_v1_gets_told_so() {
    let server = FakeServer::start(vec![Reply::raw(404, "text/plain", "File Not Found")]).await;
    let config = HttpBackend::new(server.url.clone(), Some("m"));
    let executor = Api::OpenAi.build(config, EnvSource::fixed([("X", "y")]));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent());
    let text = error.to_string();
    assert!(text.contains(&format!("({}/chat/completions)", server.url)), "{text}");
    assert!(
        text.contains(&format!(
            "base_url has no `/v1`; OpenAI-compatible servers answer under `{}/v1`",
            server.url
        )),
        "{text}"
    );
}

#[rstest]
#[case(Api::OpenAi, false)]
#[case(Api::OpenAi, true)]
#[case(Api::Anthropic, false)]
#[case(Api::Anthropic, true)]
#[tokio::test]
async fn malformed_json_is_a_protocol_error(#[case] api: Api, #[case] stream: bool) {
    let reply = if stream {
        Reply::sse("event: message_start\ndata: {\"type\": oops\n\n")
    } else {
        Reply::raw(200, "application/json", "{\"choices\": [oops")
    };
    let server = FakeServer::start(vec![reply]).await;
    let executor = api.executor(&server.url, stream, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    match named_error(&result.unwrap_err(), api, &server.url) {
        ExecError::Protocol(message) => assert!(message.contains("not valid JSON"), "{message}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn connection_dropped_mid_stream_is_a_transient_error(#[case] api: Api) {
    let body = api.stream(&["first part", "second part"]);
    let cut = body.find("second part").unwrap();
    let server = FakeServer::start(vec![Reply::sse_cut(&body, cut)]).await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let (result, seen) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(!error.is_permanent());
    match named_error(&error, api, &server.url) {
        ExecError::Connection(message) => assert!(message.contains("stream"), "{message}"),
        other => panic!("expected Connection, got {other:?}"),
    }
    assert!(streamed(&seen, OutputStream::Tokens).contains(&"first part".to_owned()));
    assert_eq!(server.requests().len(), 1, "a stream that had begun is not resent");
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn a_silent_stream_is_stalled_and_transient(#[case] api: Api) {
    let body = api.stream(&["first part", "second part"]);
    let silent_from = body.find("second part").unwrap();
    let server = FakeServer::start(vec![Reply::sse_stall(&body, silent_from)]).await;
    let stall = Duration::from_millis(300);
    let config = HttpBackend { stall_timeout: stall, ..api.config(&server.url, true, None) };
    let executor = api.build(config, EnvSource::fixed([("X", "y")]));
    let started = Instant::now();
    let (result, seen) = run(&executor, LONG).await;
    let elapsed = started.elapsed();
    let error = result.unwrap_err();
    assert_eq!(named_error(&error, api, &server.url), ExecError::Stalled(stall));
    assert!(!error.is_permanent());
    assert!(error.to_string().contains("stream stalled: nothing received for 300ms"), "{error}");
    assert!(elapsed >= stall && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(streamed(&seen, OutputStream::Tokens).contains(&"first part".to_owned()));
}

#[tokio::test]
async fn request_timeout_bounds_the_request_within_the_attempt() {
    let server = FakeServer::start(vec![
        Reply::json(200, &Api::OpenAi.success("late")).after(Duration::from_secs(30)),
    ])
    .await;
    let limit = Duration::from_millis(300);
    let config = HttpBackend {
        request_timeout: Some(limit),
        ..Api::OpenAi.config(&server.url, false, None)
    };
    let executor = Api::OpenAi.build(config, EnvSource::fixed([("X", "y")]));
    let started = Instant::now();
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(
        named_error(&result.unwrap_err(), Api::OpenAi, &server.url),
        ExecError::Timeout(limit)
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn error_event_mid_stream_is_reported(#[case] api: Api) {
    let error = match api {
        Api::OpenAi => "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\"}}\n\n".to_owned(),
        Api::Anthropic => "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".to_owned(),
    };
    let server = FakeServer::start(vec![Reply::sse(&error)]).await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    match named_error(&result.unwrap_err(), api, &server.url) {
        ExecError::Protocol(message) => assert!(message.contains("Overloaded"), "{message}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[rstest]
#[case(Api::OpenAi, false)]
#[case(Api::Anthropic, true)]
#[tokio::test]
async fn slow_server_times_out_on_time(#[case] api: Api, #[case] stream: bool) {
    let server = FakeServer::start(vec![
        Reply::json(200, &api.success("late")).after(Duration::from_secs(30)),
    ])
    .await;
    let executor = api.executor(&server.url, stream, Some(KEY_ENV));
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (result, _) = run(&executor, timeout).await;
    let elapsed = started.elapsed();
    assert_eq!(named_error(&result.unwrap_err(), api, &server.url), ExecError::Timeout(timeout));
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(700), "{elapsed:?}");
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn cancel_aborts_the_request(#[case] api: Api) {
    let server = FakeServer::start(vec![
        Reply::json(200, &api.success("late")).after(Duration::from_secs(30)),
    ])
    .await;
    let executor = api.executor(&server.url, true, Some(KEY_ENV));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let (sink, _) = sink();
    let result = executor.execute(request(LONG), sink, cancel).await;
    assert_eq!(result.unwrap_err(), ExecError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn api_key_never_appears_in_errors(#[case] api: Api) {
    let echo = format!("Incorrect API key provided: {KEY}.");
    let server = FakeServer::start(vec![Reply::json(401, &api.error_body(&echo))]).await;
    let executor = api.executor(&server.url, false, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    api.check_key_header(&server.requests()[0]);
    assert_eq!(error.http_status(), Some(401));
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{:?}", api.config(&server.url, false, Some(KEY_ENV))),
    ] {
        assert!(!text.contains(KEY), "key leaked: {text}");
    }
    assert!(error.to_string().contains("Incorrect API key provided: ***"), "{error}");
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn missing_key_variable_fails_before_any_request(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("never"))]).await;
    let executor = api.executor(&server.url, true, Some("FLIGHTDECK_TEST_UNSET_KEY"));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(
        named_error(&error, api, &server.url),
        ExecError::MissingKey("FLIGHTDECK_TEST_UNSET_KEY".into())
    );
    assert!(server.requests().is_empty());
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn no_key_configured_sends_no_key_header(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("local"))]).await;
    let executor = api.executor(&server.url, false, None);
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(result.unwrap().output, "local");
    let sent = &server.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("x-api-key"), None);
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn refused_connection_is_a_transient_connection_error(#[case] api: Api) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let executor = api.executor(&url, true, None);
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(!error.is_permanent());
    assert!(matches!(named_error(&error, api, &url), ExecError::Connection(_)), "{error:?}");
}

// ---------------------------------------------------------------- unanswered requests

#[rstest]
#[case(Api::OpenAi, true)]
#[case(Api::OpenAi, false)]
#[case(Api::Anthropic, true)]
#[case(Api::Anthropic, false)]
#[tokio::test]
async fn a_request_on_a_dropped_keep_alive_connection_is_resent_on_a_fresh_one(
    #[case] api: Api,
    #[case] stream: bool,
) {
    let answer = if stream {
        Reply::sse(&api.stream(&["ok"]))
    } else {
        Reply::json(200, &api.success("ok"))
    };
    let server = FakeServer::start_with(ConnectionMode::DropSecond, vec![], Some(answer)).await;
    let executor = api.executor(&server.url, stream, None);
    for round in 0..3 {
        let (result, _) = run(&executor, LONG).await;
        assert_eq!(result.unwrap().output, "ok", "round {round}");
    }
    assert!(server.unanswered() >= 1, "the pooled connection closed on a request");
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "each request answered once, none twice");
    let mut connections: Vec<usize> = requests.iter().map(|r| r.connection).collect();
    connections.dedup();
    assert_eq!(connections.len(), 3, "answered on three connections: {connections:?}");
}

#[tokio::test]
async fn a_request_never_answered_twice_is_a_transient_connection_error() {
    let server = FakeServer::start_with(ConnectionMode::Close, vec![], Some(Reply::Hangup)).await;
    let executor = Api::OpenAi.executor(&server.url, true, None);
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    assert!(!error.is_permanent());
    assert!(matches!(error.cause(), ExecError::Connection(_)), "{error:?}");
    assert_eq!(server.requests().len(), 2, "sent, then resent once on a fresh connection");
}

/// The figure for the README: a server that ends every connection right after one answer
/// (without `connection: close`), 200 streamed requests back to back.
#[tokio::test]
async fn two_hundred_back_to_back_requests_to_a_closing_server_all_succeed() {
    const REQUESTS: usize = 200;
    let answer = Reply::sse(&Api::OpenAi.stream(&["ok"]));
    let server =
        FakeServer::start_with(ConnectionMode::CloseAfterAnswer, vec![], Some(answer)).await;
    let executor = Api::OpenAi.executor(&server.url, true, None);
    let mut failures = Vec::new();
    for i in 0..REQUESTS {
        let (result, _) = run(&executor, LONG).await;
        if let Err(error) = result {
            failures.push(format!("request {i}: {error}"));
        }
    }
    // The same server and load through a plain pooled client, for comparison.
    let plain = reqwest::Client::new();
    let mut plain_failures = 0;
    for _ in 0..REQUESTS {
        let sent =
            plain.post(format!("{}/v1/chat/completions", server.url)).body("{}").send().await;
        match sent {
            Ok(response) => {
                if response.bytes().await.is_err() {
                    plain_failures += 1;
                }
            }
            Err(_) => plain_failures += 1,
        }
    }
    println!(
        "back-to-back against a server closing every connection: flightdeck {}/{REQUESTS} failed, \
         plain pooled client {plain_failures}/{REQUESTS} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

// ---------------------------------------------------------------- TLS and proxies

struct PrivateCa {
    ca_pem: String,
    identity: TlsIdentity,
}

/// A private CA and a certificate for `localhost` signed by it.
fn private_ca() -> PrivateCa {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Flightdeck test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    PrivateCa {
        ca_pem: ca.pem(),
        identity: TlsIdentity { cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() },
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_through_ca_file_or_ssl_cert_file_or_dir() {
    let ca = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let ca_dir = dir.path().join("certs");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ab12cd34.0"), &ca.ca_pem).unwrap();
    std::fs::write(ca_dir.join("README"), "not a certificate").unwrap();
    let api = Api::OpenAi;
    let answers = (0..4).map(|_| Reply::json(200, &api.success("secure"))).collect();
    let server = FakeServer::start_tls(&ca.identity, answers).await;
    let no_env = EnvSource::fixed([("X", "y")]);

    let (result, _) =
        run(&api.build(api.config(&server.url, false, None), no_env.clone()), LONG).await;
    let error = result.unwrap_err();
    assert!(!error.is_permanent());
    assert!(format!("{error}").contains("UnknownIssuer"), "{error}");

    let config =
        HttpBackend { ca_file: Some(ca_file.clone()), ..api.config(&server.url, false, None) };
    let (result, _) = run(&api.build(config, no_env), LONG).await;
    assert_eq!(result.unwrap().output, "secure");

    let file_env = EnvSource::fixed([("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    let (result, _) = run(&api.build(api.config(&server.url, false, None), file_env), LONG).await;
    assert_eq!(result.unwrap().output, "secure");

    let dir_env = EnvSource::fixed([("SSL_CERT_DIR", ca_dir.to_str().unwrap())]);
    let (result, _) = run(&api.build(api.config(&server.url, false, None), dir_env), LONG).await;
    assert_eq!(result.unwrap().output, "secure");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_configuration_error() {
    let config = HttpBackend {
        ca_file: Some(PathBuf::from("/nonexistent/flightdeck-ca.pem")),
        ..Api::OpenAi.config("https://127.0.0.1:9", false, None)
    };
    let error = Api::OpenAi.try_build(config, EnvSource::fixed([("X", "y")])).err().unwrap();
    assert!(error.is_permanent());
    let text = error.to_string();
    assert!(text.contains(&format!("backends.{BACKEND}.ca_file")), "{text}");
    assert!(text.contains("/nonexistent/flightdeck-ca.pem"), "{text}");
}

#[rstest]
#[case("HTTP_PROXY")]
#[case("http_proxy")]
#[case("ALL_PROXY")]
#[tokio::test]
async fn loopback_servers_bypass_the_proxy_unless_asked(#[case] variable: &str) {
    let api = Api::OpenAi;
    let server = FakeServer::start(vec![
        Reply::json(200, &api.success("direct")),
        Reply::json(200, &api.success("direct")),
    ])
    .await;
    let proxy = FakeServer::start(vec![Reply::json(200, &api.success("via proxy"))]).await;
    let env = EnvSource::fixed([(variable, proxy.url.as_str()), (KEY_ENV, KEY)]);
    let localhost = server.url.replace("127.0.0.1", "localhost");
    for url in [&server.url, &localhost] {
        let executor = api.build(api.config(url, false, Some(KEY_ENV)), env.clone());
        let (result, _) = run(&executor, LONG).await;
        assert_eq!(result.unwrap().output, "direct", "{url}");
    }
    assert_eq!(proxy.connections(), 0, "the proxy must receive nothing, least of all the key");
    assert_eq!(server.requests().len(), 2);

    let always = HttpBackend { proxy: ProxyMode::Always, ..api.config(&server.url, false, None) };
    let (result, _) = run(&api.build(always, env.clone()), LONG).await;
    assert_eq!(result.unwrap().output, "via proxy");
    let through = &proxy.requests()[0];
    assert_eq!(through.path, format!("{}/v1/chat/completions", server.url));

    let never = HttpBackend { proxy: ProxyMode::Never, ..api.config(&server.url, false, None) };
    let executor = api.build(never, env);
    drop(server);
    let (result, _) = run(&executor, LONG).await;
    assert!(matches!(result.unwrap_err().cause(), ExecError::Connection(_)));
    assert_eq!(proxy.requests().len(), 1);
}

#[test]
fn build_picks_the_executor_and_checks_the_url() {
    let http = Api::OpenAi.config("http://127.0.0.1:9", true, None);
    let openai = exec::build("gpt", &BackendConfig::Openai(http.clone())).unwrap();
    assert_eq!(openai.kind(), "openai");
    let anthropic = exec::build("claude", &BackendConfig::Anthropic(http.clone())).unwrap();
    assert_eq!(anthropic.kind(), "anthropic");
    let sim = exec::build("sim", &BackendConfig::Sim(SimBackend::default())).unwrap();
    assert!(sim.is_simulated());

    let bad = HttpBackend { base_url: "api.openai.com/v1".into(), ..http };
    let error = exec::build("gpt", &BackendConfig::Openai(bad)).err().unwrap();
    assert!(error.is_permanent());
    assert!(error.to_string().contains("backends.gpt.base_url"), "{error}");
    assert!(error.to_string().contains("api.openai.com/v1"), "{error}");
}

// ---------------------------------------------------------------- time to first token

/// Prints the median time to first token of the executor and of `curl -N` against the same
/// local streaming server. Run with
/// `cargo test --release --test exec_http time_to_first_token -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement for the README, not a check"]
async fn time_to_first_token_against_curl() {
    const ROUNDS: usize = 50;
    let answer = Reply::sse(&Api::OpenAi.stream(&["first", " second"]));
    let server = FakeServer::start_with(ConnectionMode::KeepAlive, vec![], Some(answer)).await;
    let pooled = Api::OpenAi.executor(&server.url, true, None);
    let mut ours = Vec::new();
    let mut ours_fresh = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(first_token(&pooled).await);
        // A new executor has no pooled connection: it connects first, as curl does.
        ours_fresh.push(first_token(&Api::OpenAi.executor(&server.url, true, None)).await);
    }
    let url = format!("{}/v1/chat/completions", server.url);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let mut curl = Vec::new();
    for _ in 0..ROUNDS {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sN",
                "-o",
                "/dev/null",
                "-w",
                "%{time_starttransfer}",
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                &url,
            ])
            .output()
            .await
            .unwrap();
        let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        curl.push(Duration::from_secs_f64(seconds));
    }
    ours.sort();
    ours_fresh.sort();
    curl.sort();
    println!(
        "time to first token, median of {ROUNDS}: flightdeck {:?} on a pooled connection, \
         {:?} on a new one; curl {:?} (new connection, time_starttransfer: the server writes \
         the headers and the first token together)",
        ours[ROUNDS / 2],
        ours_fresh[ROUNDS / 2],
        curl[ROUNDS / 2]
    );
}

/// Time from starting an attempt to its first streamed token.
async fn first_token(executor: &Arc<dyn Executor>) -> Duration {
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mark = Arc::clone(&first);
    let sink: OutputSink = Arc::new(move |_, _| {
        mark.lock().unwrap().get_or_insert_with(Instant::now);
    });
    let started = Instant::now();
    executor.execute(request(LONG), sink, CancellationToken::new()).await.unwrap();
    let first = first.lock().unwrap().unwrap();
    first - started
}
