//! The `streamguard.v1.Guardrails` gRPC service, health and reflection. The
//! service only converts: wire types in, the shared edge, wire types out.

mod check;
mod convert;
mod guard;
mod status;
mod streamed;
mod tools;

use std::{future::Future, pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt};
use tonic::{
    Request, Response, Status,
    metadata::{Ascii, MetadataMap, MetadataValue},
};

use super::{
    FILE_DESCRIPTOR_SET, ServeError, State,
    edge::{Call, CallMeta, Rejected, Transport},
};
use crate::{engine::Event, error::PreconditionFailure, pb};

/// The gRPC service over the server's shared state.
#[derive(Debug, Clone)]
pub struct GuardrailsService {
    state: Arc<State>,
}

impl GuardrailsService {
    pub fn new(state: Arc<State>) -> Self {
        GuardrailsService { state }
    }

    /// A Generate / StreamGenerate request, and the thread it names.
    fn request(
        &self,
        mut body: pb::GenerateRequest,
        registry: &crate::engine::Registry,
    ) -> Result<(Vec<String>, crate::engine::Request, Resumed), crate::error::Error> {
        let thread_id = std::mem::take(&mut body.thread_id);
        let (ids, request, resume) = convert::request(body, &self.state.state_key, registry)?;
        if !thread_id.is_empty() {
            crate::server::threads::Threads::validate(&thread_id, "thread_id")?;
        }
        Ok((ids, request, (resume, thread_id)))
    }

    /// Admits the call and puts its thread's earlier messages in front.
    async fn admit(
        &self,
        method: &'static str,
        metadata: &MetadataMap,
        body: pb::GenerateRequest,
    ) -> Result<(Call, Opened), Status> {
        let (mut call, (resume, thread_id)) =
            self.state
                .prepare(Transport::Grpc, method, meta(metadata), |registry| {
                    self.request(body, registry)
                })?;
        let thread = match thread_id.is_empty() {
            true => None,
            false => Some(
                call.open_thread(thread_id, "thread_id")
                    .await
                    .map_err(|e| status(&e, &call.request_id))?,
            ),
        };
        Ok((call, (resume, thread)))
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::guardrails_server::GuardrailsServer<Self> {
        pb::guardrails_server::GuardrailsServer::new(self)
    }
}

type StreamResult = Pin<Box<dyn Stream<Item = Result<pb::StreamGenerateResponse, Status>> + Send>>;
/// A request's dialog state and the thread it names (empty: none).
type Resumed = (Option<crate::server::state_token::Resume>, String);
/// A call's dialog state and its thread (id, conversation sent).
type Opened = (
    Option<crate::server::state_token::Resume>,
    Option<(String, Vec<crate::llm::ChatMessage>)>,
);
type GuardResult = Pin<Box<dyn Stream<Item = Result<pb::GuardStreamResponse, Status>> + Send>>;

/// A chunk, reasoning or tool-call event on the wire (the final event is
/// the caller's).
fn event_pb(event: Event) -> Option<pb::stream_generate_response::Event> {
    use pb::stream_generate_response::Event as Out;
    Some(match event {
        Event::Chunk(text) => Out::Chunk(pb::Chunk { text }),
        Event::Reasoning(text) => Out::Reasoning(pb::Reasoning { text }),
        Event::ToolCall(piece) => Out::ToolCall(tools::delta_pb(*piece)),
        Event::Final(_) => return None,
    })
}

fn meta(metadata: &MetadataMap) -> CallMeta<'_> {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    CallMeta {
        authorization: text("authorization"),
        request_id: text("x-request-id"),
        traceparent: text("traceparent"),
        deadline: convert::deadline(metadata),
    }
}

/// The request id in a response's (or an error's) metadata.
fn with_request_id(metadata: &mut MetadataMap, rid: &str) {
    if let Ok(value) = rid.parse::<MetadataValue<Ascii>>() {
        metadata.insert("x-request-id", value);
    }
}

use status::status;

impl From<Rejected> for Status {
    fn from(r: Rejected) -> Self {
        status(&r.error, &r.request_id)
    }
}

#[tonic::async_trait]
impl pb::guardrails_server::Guardrails for GuardrailsService {
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let (call, (resume, thread)) = self
            .admit(super::metrics::GENERATE, &metadata, body)
            .await?;
        let (rid, id) = (call.request_id.clone(), call.config_id.clone());
        let answer = call.generate().await.map_err(|e| status(&e, &rid))?;
        self.state
            .threads
            .keep(thread, &answer)
            .await
            .map_err(|e| status(&e, &rid))?;
        let state = convert::state(&self.state.state_key, resume.as_ref(), &answer)
            .map_err(|e| status(&e, &rid))?;
        let mut response = Response::new(convert::response(&id, answer, state));
        with_request_id(response.metadata_mut(), &rid);
        Ok(response)
    }

    type StreamGenerateStream = StreamResult;

    async fn stream_generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        let (metadata, _, body) = request.into_parts();
        let (call, (resume, thread)) = self
            .admit(super::metrics::STREAM_GENERATE, &metadata, body)
            .await?;
        let rid = call.request_id.clone();
        let ending = streamed::Ending {
            server: self.state.clone(),
            config_id: call.config_id.clone(),
            request_id: rid.clone(),
            resume,
        };
        // Preconditions and request errors fail the RPC before any LLM call.
        let events = call.stream().map_err(|e| status(&e, &rid))?;
        // When the caller goes away tonic drops this stream, which drops the
        // engine stream and with it the upstream HTTP request.
        let mut stream = streamed::events(events, ending, thread);
        // The response head waits for the first event: a failure before any
        // content is then a plain status, and the head and the first chunk
        // reach the caller together (one wakeup on its side, not two: this
        // was most of what streamguard added to the time to first token).
        let first = match stream.next().await {
            Some(Err(mut s)) => {
                with_request_id(s.metadata_mut(), &rid);
                return Err(s);
            }
            first => first,
        };
        let stream = futures_util::stream::iter(first).chain(stream);
        let mut response = Response::new(Box::pin(stream) as StreamResult);
        with_request_id(response.metadata_mut(), &rid);
        Ok(response)
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let (call, stages) = self.state.prepare(
            Transport::Grpc,
            super::metrics::CHECK,
            meta(&metadata),
            |_| {
                let (ids, request, stages) = check::request(body)?;
                Ok((ids, request, stages))
            },
        )?;
        let (rid, id) = (call.request_id.clone(), call.config_id.clone());
        let result = call.check(stages).await.map_err(|e| status(&e, &rid))?;
        let mut response = Response::new(check::response(&id, result));
        with_request_id(response.metadata_mut(), &rid);
        Ok(response)
    }

    type GuardStreamStream = GuardResult;

    async fn guard_stream(
        &self,
        request: Request<tonic::Streaming<pb::GuardStreamRequest>>,
    ) -> Result<Response<Self::GuardStreamStream>, Status> {
        let (metadata, _, mut inbound) = request.into_parts();
        // An unknown key is refused before the call may wait for its `start`.
        let auth = metadata.get("authorization").and_then(|v| v.to_str().ok());
        if let Err(e) = self.state.admission.authenticate(auth) {
            return Err(status(&e, &crate::server::edge::new_id().to_string()));
        }
        let started = guard::start(&mut inbound).await;
        let (call, ()) = self.state.prepare(
            Transport::Grpc,
            super::metrics::GUARD_STREAM,
            meta(&metadata),
            |_| {
                let (ids, request) = started?;
                Ok((ids, request, ()))
            },
        )?;
        let (rid, id) = (call.request_id.clone(), call.config_id.clone());
        let stream_rid = rid.clone();
        let events = call
            .guard_stream(guard::chunks(inbound))
            .map_err(|e| status(&e, &rid))?;
        let stream =
            events.filter_map(move |e| std::future::ready(guard::event(&id, e, &stream_rid)));
        let mut response = Response::new(Box::pin(stream) as GuardResult);
        with_request_id(response.metadata_mut(), &rid);
        Ok(response)
    }

    async fn list_configs(
        &self,
        request: Request<pb::ListConfigsRequest>,
    ) -> Result<Response<pb::ListConfigsResponse>, Status> {
        let admitted = self
            .state
            .admission
            .admit(meta(request.metadata()).authorization)?;
        let registry = self.state.registry();
        let configs = registry
            .iter()
            .filter(|g| admitted.authorize(g.config().id()).is_ok())
            .map(|g| {
                let c = g.config();
                let streaming = g.check_streaming();
                let enabled_by = match (&streaming, c.streaming()) {
                    (Err(PreconditionFailure::StreamingDisabled { .. }), _) => "",
                    (_, Some(_)) => "config",
                    (_, None) => "server default",
                };
                pb::ConfigInfo {
                    id: c.id().to_string(),
                    streaming_supported: streaming.is_ok(),
                    streaming_unsupported_reason: streaming
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                    input_flows: c.input().flows.iter().map(|f| f.name.clone()).collect(),
                    output_flows: c.output().flows.iter().map(|f| f.name.clone()).collect(),
                    main_model: c
                        .main_model()
                        .map(|m| m.model().to_string())
                        .unwrap_or_default(),
                    streaming_enabled_by: enabled_by.into(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListConfigsResponse { configs }))
    }
}

/// Serves gRPC (and gRPC-Web, over HTTP/1.1 or h2) on an already-bound
/// listener until `shutdown` completes, then stops accepting, reports
/// NOT_SERVING and lets in-flight calls finish (the edge ends them when the
/// shutdown grace passes).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    gate: Arc<super::listen::Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let max_bytes = state.admission.settings.max_request_bytes;
    let cors = super::http::cors(&state.admission.settings.cors_origins);
    let tls = match &state.admission.settings.tls {
        Some(tls) => Some(tls.acceptor().map_err(ServeError::Setup)?),
        None => None,
    };
    let service = GuardrailsService::new(state);
    type Served = pb::guardrails_server::GuardrailsServer<GuardrailsService>;
    health.set_serving::<Served>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let shutdown = async move {
        shutdown.await;
        health.set_not_serving::<Served>().await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service.into_server().max_decoding_message_size(max_bytes))
        .prepare();
    let served = super::listen::Listener {
        name: "grpc",
        service: tower::ServiceBuilder::new()
            .option_layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .service(routes),
        tls,
        gate,
    };
    super::listen::serve(listener, served, shutdown).await;
    Ok(())
}
