//! The HTTP executors against a real HTTP server on 127.0.0.1 speaking the exact wire
//! formats: `OpenAI` Chat Completions (SSE `data:` lines, `[DONE]`) and Anthropic Messages
//! (`event:` + `data:` lines).

#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck::config::{BackendConfig, HttpBackend, SimBackend};
use flightdeck::event::{OutputStream, TokenUsage};
use flightdeck::exec::anthropic::AnthropicExecutor;
use flightdeck::exec::env::EnvSource;
use flightdeck::exec::openai::OpenAiExecutor;
use flightdeck::exec::{self, ExecError, ExecOutcome, ExecRequest, Executor, OutputSink};
use rstest::rstest;
use serde_json::{Value, json};
use support::{FakeServer, Reply};
use tokio_util::sync::CancellationToken;

const KEY_ENV: &str = "FLIGHTDECK_TEST_API_KEY";
const KEY: &str = "sk-test-very-secret-4242";

#[derive(Debug, Clone, Copy)]
enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    fn config(
        self,
        url: &str,
        stream: bool,
        max_retries: u32,
        key_env: Option<&str>,
    ) -> HttpBackend {
        let base_url = match self {
            Api::OpenAi => format!("{url}/v1"),
            Api::Anthropic => url.to_owned(),
        };
        HttpBackend {
            base_url,
            model: "default-model".into(),
            api_key_env: key_env.map(str::to_owned),
            stream,
            max_tokens: 321,
            temperature: Some(0.25),
            max_retries,
        }
    }

    fn executor(
        self,
        url: &str,
        stream: bool,
        max_retries: u32,
        key_env: Option<&str>,
    ) -> Arc<dyn Executor> {
        let config = self.config(url, stream, max_retries, key_env);
        let env = EnvSource::fixed([(KEY_ENV, KEY)]);
        let (base, max) = (Duration::from_millis(20), Duration::from_millis(50));
        match self {
            Api::OpenAi => Arc::new(
                OpenAiExecutor::new("test", config).unwrap().with_env(env).with_backoff(base, max),
            ),
            Api::Anthropic => Arc::new(
                AnthropicExecutor::new("test", config)
                    .unwrap()
                    .with_env(env)
                    .with_backoff(base, max),
            ),
        }
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
    let (sink, seen) = sink();
    let result = executor.execute(request(timeout), sink, CancellationToken::new()).await;
    (result, seen)
}

const USAGE: TokenUsage = TokenUsage { input_tokens: 12, output_tokens: 7 };
const LONG: Duration = Duration::from_secs(10);

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn streaming_success_streams_tokens_and_records_usage(#[case] api: Api) {
    let server =
        FakeServer::start(vec![Reply::sse(&api.stream(&["Use ", "a queue", " — and é"]))]).await;
    let executor = api.executor(&server.url, true, 2, Some(KEY_ENV));
    let (result, seen) = run(&executor, LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Use a queue — and é");
    assert_eq!(outcome.usage, Some(USAGE));
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
    assert_eq!(body["model"], "agent-model", "the agent's model overrides the backend's");
    assert_eq!(body["max_tokens"], 321);
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["stream"], true);
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
    let executor = api.executor(&server.url, false, 2, Some(KEY_ENV));
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
async fn rate_limit_waits_for_retry_after_then_succeeds(#[case] api: Api) {
    let server = FakeServer::start(vec![
        Reply::json(429, &api.error_body("slow down")).with_header("retry-after", "1"),
        Reply::json(200, &api.success("ok")),
    ])
    .await;
    let executor = api.executor(&server.url, false, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(result.unwrap().output, "ok");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(3), "retried after {waited:?}");
}

#[rstest]
#[case(Api::OpenAi, 500)]
#[case(Api::Anthropic, 500)]
#[case(Api::Anthropic, 529)]
#[tokio::test]
async fn server_error_is_retried(#[case] api: Api, #[case] status: u16) {
    let server = FakeServer::start(vec![
        Reply::json(status, &api.error_body("busy")),
        Reply::sse(&api.stream(&["fine"])),
    ])
    .await;
    let executor = api.executor(&server.url, true, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(result.unwrap().output, "fine");
    assert_eq!(server.requests().len(), 2);
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn server_errors_beyond_max_retries_fail(#[case] api: Api) {
    let failing = Reply::json(503, &api.error_body("overloaded, try later"));
    let server =
        FakeServer::start(vec![failing.clone(), failing.clone(), failing.clone(), failing]).await;
    let executor = api.executor(&server.url, false, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    match result.unwrap_err() {
        ExecError::Http { status, message } => {
            assert_eq!(status, 503);
            assert!(message.contains("overloaded, try later"), "{message}");
            assert!(message.contains("2 retries"), "{message}");
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3, "one try plus max_retries");
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn client_error_is_not_retried_and_carries_the_api_message(#[case] api: Api) {
    let server =
        FakeServer::start(vec![Reply::json(400, &api.error_body("max_tokens: must be positive"))])
            .await;
    let executor = api.executor(&server.url, true, 3, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(
        result.unwrap_err(),
        ExecError::Http { status: 400, message: "max_tokens: must be positive".into() }
    );
    assert_eq!(server.requests().len(), 1);
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
    let executor = api.executor(&server.url, stream, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    match result.unwrap_err() {
        ExecError::Protocol(message) => assert!(message.contains("not valid JSON"), "{message}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn connection_dropped_mid_stream_is_a_clear_error(#[case] api: Api) {
    let body = api.stream(&["first part", "second part"]);
    let cut = body.find("second part").unwrap();
    let server = FakeServer::start(vec![Reply::sse_cut(&body, cut)]).await;
    let executor = api.executor(&server.url, true, 2, Some(KEY_ENV));
    let (result, seen) = run(&executor, LONG).await;
    match result.unwrap_err() {
        ExecError::Connection(message) => assert!(message.contains("stream"), "{message}"),
        other => panic!("expected Connection, got {other:?}"),
    }
    assert!(
        seen.lock().unwrap().iter().any(|(_, t)| t == "first part"),
        "tokens before the cut streamed"
    );
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
    let executor = api.executor(&server.url, true, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    match result.unwrap_err() {
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
    let executor = api.executor(&server.url, stream, 2, Some(KEY_ENV));
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (result, _) = run(&executor, timeout).await;
    let elapsed = started.elapsed();
    assert_eq!(result.unwrap_err(), ExecError::Timeout(timeout));
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(700), "{elapsed:?}");
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn retry_after_beyond_the_timeout_is_capped(#[case] api: Api) {
    let server = FakeServer::start(vec![
        Reply::json(429, &api.error_body("slow down")).with_header("retry-after", "120"),
    ])
    .await;
    let executor = api.executor(&server.url, false, 3, Some(KEY_ENV));
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let (result, _) = run(&executor, timeout).await;
    assert_eq!(result.unwrap_err(), ExecError::Timeout(timeout));
    assert!(started.elapsed() < timeout + Duration::from_millis(700), "{:?}", started.elapsed());
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
    let executor = api.executor(&server.url, true, 2, Some(KEY_ENV));
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
    let executor = api.executor(&server.url, false, 2, Some(KEY_ENV));
    let (result, _) = run(&executor, LONG).await;
    let error = result.unwrap_err();
    api.check_key_header(&server.requests()[0]);
    assert!(matches!(error, ExecError::Http { status: 401, .. }), "{error:?}");
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{:?}", api.config(&server.url, false, 2, Some(KEY_ENV))),
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
    let executor = api.executor(&server.url, true, 2, Some("FLIGHTDECK_TEST_UNSET_KEY"));
    let (result, _) = run(&executor, LONG).await;
    assert_eq!(result.unwrap_err(), ExecError::MissingKey("FLIGHTDECK_TEST_UNSET_KEY".into()));
    assert!(server.requests().is_empty());
}

#[rstest]
#[case(Api::OpenAi)]
#[case(Api::Anthropic)]
#[tokio::test]
async fn no_key_configured_sends_no_key_header(#[case] api: Api) {
    let server = FakeServer::start(vec![Reply::json(200, &api.success("local"))]).await;
    let executor = api.executor(&server.url, false, 2, None);
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
async fn refused_connection_is_a_connection_error(#[case] api: Api) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let executor = api.executor(&url, true, 2, None);
    let (result, _) = run(&executor, LONG).await;
    assert!(matches!(result, Err(ExecError::Connection(_))), "{result:?}");
}

#[test]
fn build_picks_the_executor_and_checks_the_url() {
    let http = Api::OpenAi.config("http://127.0.0.1:9", true, 1, None);
    let openai = exec::build("gpt", &BackendConfig::Openai(http.clone())).unwrap();
    assert_eq!(openai.kind(), "openai");
    let anthropic = exec::build("claude", &BackendConfig::Anthropic(http.clone())).unwrap();
    assert_eq!(anthropic.kind(), "anthropic");
    let sim = exec::build("sim", &BackendConfig::Sim(SimBackend::default())).unwrap();
    assert!(sim.is_simulated());

    let bad = HttpBackend { base_url: "api.openai.com/v1".into(), ..http };
    let error = exec::build("gpt", &BackendConfig::Openai(bad)).err().unwrap();
    assert!(error.to_string().contains("backends.gpt.base_url"), "{error}");
    assert!(error.to_string().contains("api.openai.com/v1"), "{error}");
}
