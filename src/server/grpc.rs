//! The `streamguard.v1.Guardrails` gRPC service: wire types in, engine
//! types out. Conversion happens here, with exhaustive destructuring so a new
//! proto field fails to compile until it is handled.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, metadata::MetadataMap};
use tracing::Instrument;

use crate::{
    Guardrails,
    engine::{self, Event, GenerationLog},
    error::Error,
    llm::{CallParams, ChatMessage, Usage},
    pb,
    server::{State, admission::Admitted},
};

/// The gRPC service over the server's shared state.
#[derive(Debug, Clone)]
pub struct GuardrailsService {
    state: Arc<State>,
}

impl GuardrailsService {
    pub fn new(state: Arc<State>) -> Self {
        GuardrailsService { state }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::guardrails_server::GuardrailsServer<Self> {
        pb::guardrails_server::GuardrailsServer::new(self)
    }
}

type StreamResult = Pin<Box<dyn Stream<Item = Result<pb::StreamGenerateResponse, Status>> + Send>>;

/// The caller's deadline from the `grpc-timeout` header (`<digits><unit>`).
fn deadline(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let limit = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    // tonic's own timeout layer answers an expired unary call with CANCELLED;
    // finishing a little earlier lets the caller see DEADLINE_EXCEEDED.
    Some(limit.saturating_sub((limit / 20).min(Duration::from_millis(20))))
}

impl TryFrom<pb::GenerateRequest> for (String, engine::Request) {
    type Error = Error;

    fn try_from(request: pb::GenerateRequest) -> Result<Self, Error> {
        let pb::GenerateRequest {
            config_id,
            messages,
            options,
        } = request;
        let messages = messages
            .into_iter()
            .map(|pb::Message { role, content }| ChatMessage { role, content })
            .collect();
        let mut engine_options = engine::Options::default();
        if let Some(pb::GenerationOptions {
            llm_params,
            rails,
            log,
        }) = options
        {
            engine_options.log = log;
            if let Some(pb::LlmParams {
                temperature,
                max_tokens,
                stop,
            }) = llm_params
            {
                if max_tokens == Some(0) {
                    return Err(Error::invalid(
                        "options.llm_params.max_tokens",
                        "must be at least 1",
                    ));
                }
                engine_options.llm_params = CallParams {
                    temperature,
                    max_tokens,
                    stop,
                };
            }
            if let Some(pb::RailsSelection {
                input,
                output,
                input_flows,
                output_flows,
            }) = rails
            {
                engine_options.input_rails = input.unwrap_or(true);
                engine_options.output_rails = output.unwrap_or(true);
                engine_options.input_flows = (!input_flows.is_empty()).then_some(input_flows);
                engine_options.output_flows = (!output_flows.is_empty()).then_some(output_flows);
            }
        }
        Ok((
            config_id,
            engine::Request {
                messages,
                options: engine_options,
                traceparent: None,
            },
        ))
    }
}

fn to_pb(config_id: &str, response: engine::Response) -> pb::GenerateResponse {
    let engine::Response {
        content,
        violation,
        usage,
        log,
        dialog,
    } = response;
    pb::GenerateResponse {
        message: Some(pb::Message {
            role: "assistant".into(),
            content,
        }),
        violation: violation.map(|v| pb::RailViolation {
            rail: v.rail,
            stage: v.stage.to_string(),
            r#type: v.kind.to_string(),
            code: v.code.to_string(),
            message: v.message,
            reason: v.reason,
        }),
        usage: usage.map(usage_pb),
        config_id: config_id.to_string(),
        log: log.map(log_pb),
        dialog: dialog.map(|d| pb::DialogTurn {
            user_intent: d.user_intent,
            bot_intent: d.bot_intent,
        }),
    }
}

fn usage_pb(u: Usage) -> pb::TokenUsage {
    pb::TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn log_pb(log: GenerationLog) -> pb::GenerationLog {
    let GenerationLog {
        rails,
        llm_calls,
        timing,
    } = log;
    pb::GenerationLog {
        rails: rails
            .into_iter()
            .map(|r| pb::ActivatedRail {
                flow: r.flow,
                stage: r.stage.to_string(),
                decision: r.decision.as_str().to_string(),
                reason: r.reason,
                duration_ms: ms(r.duration),
            })
            .collect(),
        llm_calls: llm_calls
            .into_iter()
            .map(|c| pb::LlmCall {
                task: c.task,
                prompt: c.prompt,
                completion: c.completion,
                usage: c.usage.map(usage_pb),
                duration_ms: ms(c.duration),
            })
            .collect(),
        timing: Some(pb::PhaseTiming {
            input_rails_ms: ms(timing.input_rails),
            generation_ms: ms(timing.generation),
            output_rails_ms: ms(timing.output_rails),
            total_ms: ms(timing.total),
        }),
    }
}

fn request_id_of(metadata: &MetadataMap) -> String {
    super::request_id(metadata.get("x-request-id").and_then(|v| v.to_str().ok()))
}

/// Returns the request id in the response metadata (or the error's).
fn set_request_id<T>(result: &mut Result<Response<T>, Status>, rid: &str) {
    let Ok(value) = rid.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>() else {
        return;
    };
    match result {
        Ok(r) => {
            r.metadata_mut().insert("x-request-id", value);
        }
        Err(s) => {
            s.metadata_mut().insert("x-request-id", value);
        }
    }
}

fn authorization(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("authorization").and_then(|v| v.to_str().ok())
}

/// An admitted request, ready to run.
type Prepared = (Admitted, Guardrails, engine::Request, Option<Duration>);

impl GuardrailsService {
    /// Admits the caller, converts the request and finds its config.
    fn prepare(&self, request: Request<pb::GenerateRequest>) -> Result<Prepared, Error> {
        let admitted = self
            .state
            .admission
            .admit(authorization(request.metadata()))?;
        tracing::Span::current().record("key", admitted.key_name());
        let limit = deadline(request.metadata());
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (config_id, mut request): (String, engine::Request) =
            request.into_inner().try_into()?;
        request.traceparent = traceparent;
        self.state.admission.check(&request)?;
        let rails = self.state.registry().get(&config_id)?.clone();
        admitted.authorize(&rails.config().id)?;
        Ok((admitted, rails, request, limit))
    }
}

#[tonic::async_trait]
impl pb::guardrails_server::Guardrails for GuardrailsService {
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let rid = request_id_of(request.metadata());
        let span = tracing::info_span!("request", method = "Generate", request_id = %rid, key = tracing::field::Empty);
        let mut result = self.generate_inner(request).instrument(span).await;
        set_request_id(&mut result, &rid);
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let config = result
            .as_ref()
            .map_or("", |r| r.get_ref().config_id.as_str());
        super::metrics::request(config, "Generate", format!("{code:?}"));
        result
    }

    type StreamGenerateStream = StreamResult;

    async fn stream_generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        let rid = request_id_of(request.metadata());
        let span = tracing::info_span!("request", method = "StreamGenerate", request_id = %rid, key = tracing::field::Empty);
        let mut result = span.in_scope(|| self.stream_generate_inner(request));
        if let Err(s) = &result {
            super::metrics::request("", "StreamGenerate", format!("{:?}", s.code()));
        }
        set_request_id(&mut result, &rid);
        result
    }

    async fn list_configs(
        &self,
        request: Request<pb::ListConfigsRequest>,
    ) -> Result<Response<pb::ListConfigsResponse>, Status> {
        self.list_configs_inner(request)
    }
}

impl GuardrailsService {
    async fn generate_inner(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let (admitted, rails, request, limit) = self.prepare(request)?;
        let id = rails.config().id.clone();
        let work = rails.generate(request);
        let aborted = self.state.aborted();
        let response = tokio::select! {
            r = async {
                match limit {
                    Some(limit) => tokio::time::timeout(limit, work)
                        .await
                        .map_err(|_| Error::DeadlineExceeded(limit))?,
                    None => work.await,
                }
            } => r?,
            () = aborted => return Err(Error::ShuttingDown("the server is shutting down".into()).into()),
        };
        drop(admitted);
        Ok(Response::new(to_pb(&id, response)))
    }

    fn stream_generate_inner(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<StreamResult>, Status> {
        let (admitted, rails, request, limit) = self.prepare(request)?;
        let id = rails.config().id.clone();
        // Preconditions and request errors fail the RPC before any LLM call.
        let mut events = rails.stream(request)?.map(move |event| match event {
            Ok(Event::Chunk(text)) => Ok(pb::StreamGenerateResponse {
                event: Some(pb::stream_generate_response::Event::Chunk(pb::Chunk {
                    text,
                })),
            }),
            Ok(Event::Final(response)) => Ok(pb::StreamGenerateResponse {
                event: Some(pb::stream_generate_response::Event::Final(to_pb(
                    &id, *response,
                ))),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "stream failed");
                Err(e.to_status())
            }
        });
        let aborted = self.state.aborted();
        // When the caller goes away tonic drops this stream, which drops the
        // engine stream and with it the upstream HTTP request. The caller's
        // deadline and the end of the shutdown grace end it too.
        let config = rails.config().id.clone();
        let stream: StreamResult = Box::pin(async_stream::stream! {
            let _admitted = admitted;
            let mut code = tonic::Code::Ok;
            let timer = tokio::time::sleep(limit.unwrap_or(Duration::MAX / 4));
            tokio::pin!(timer);
            tokio::pin!(aborted);
            loop {
                tokio::select! {
                    item = events.next() => match item {
                        Some(item) => {
                            if let Err(s) = &item {
                                code = s.code();
                            }
                            yield item;
                        }
                        None => break,
                    },
                    () = &mut timer, if limit.is_some() => {
                        code = tonic::Code::DeadlineExceeded;
                        yield Err(Error::DeadlineExceeded(limit.unwrap_or_default()).to_status());
                        break;
                    }
                    () = &mut aborted => {
                        code = tonic::Code::Unavailable;
                        yield Err(Error::ShuttingDown("the server is shutting down; retry on another replica".into()).to_status());
                        break;
                    }
                }
            }
            super::metrics::request(&config, "StreamGenerate", format!("{code:?}"));
        });
        Ok(Response::new(stream))
    }

    fn list_configs_inner(
        &self,
        request: Request<pb::ListConfigsRequest>,
    ) -> Result<Response<pb::ListConfigsResponse>, Status> {
        let admitted = self
            .state
            .admission
            .admit(authorization(request.metadata()))?;
        let registry = self.state.registry();
        let configs = registry
            .iter()
            .filter(|g| admitted.authorize(&g.config().id).is_ok())
            .map(|g| {
                let c = g.config();
                let streaming = g.check_streaming();
                pb::ConfigInfo {
                    id: c.id.clone(),
                    streaming_supported: streaming.is_ok(),
                    streaming_unsupported_reason: streaming
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                    input_flows: c.input.flows.iter().map(|f| f.name.clone()).collect(),
                    output_flows: c.output.flows.iter().map(|f| f.name.clone()).collect(),
                    main_model: c.main_model().model.clone(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListConfigsResponse { configs }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses() {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", "200m".parse().unwrap());
        assert_eq!(deadline(&m), Some(Duration::from_millis(190)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(deadline(&m), Some(Duration::from_millis(2980)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(deadline(&m), None);
    }
}
