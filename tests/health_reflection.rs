//! Health checks and server reflection, as grpcurl and meshes use them.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_reports_serving_for_the_guardrails_service() {
    let configs = Configs::new();
    configs.add("bot", &config("http://127.0.0.1:9/v1", ""));
    let server = start(configs.root()).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "streamguard.v1.Guardrails"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Svc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let configs = Configs::new();
    configs.add("bot", &config("http://127.0.0.1:9/v1", ""));
    let server = start(configs.root()).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"streamguard.v1.Guardrails"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "streamguard.v1.Guardrails".into(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
    ));
}

/// One gRPC-Web frame: flag, big-endian length, payload.
fn grpc_web_frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn item16_grpc_web_over_http1_reaches_the_service_without_a_proxy() {
    use prost::Message;
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let settings = streamguard::server::ServerSettings {
        cors_origins: vec!["https://app.example".into()],
        ..Default::default()
    };
    let server = start_with(configs.root(), settings).await;
    let url = format!("http://{}/streamguard.v1.Guardrails/Generate", server.addr);
    // reqwest speaks HTTP/1.1 to an http:// URL, as a browser's fetch may.
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    // A browser on another origin asks first (--cors-origin covers gRPC-Web too).
    let preflight = http1
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let body = grpc_web_frame(0, &request("bot", "hi").encode_to_vec());
    let r = http1
        .post(&url)
        .header("origin", "https://app.example")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let bytes = r.bytes().await.unwrap();
    let (flag, len) = (
        bytes[0],
        u32::from_be_bytes(bytes[1..5].try_into().unwrap()),
    );
    assert_eq!(flag, 0, "a message frame first");
    let end = 5 + usize::try_from(len).unwrap();
    let reply = streamguard::pb::GenerateResponse::decode(&bytes[5..end]).unwrap();
    assert_eq!(
        reply.message.unwrap().content,
        Script::default().tokens.concat()
    );
    // Then the trailers frame, with the status.
    assert_eq!(bytes[end], 0x80);
    let trailers = String::from_utf8_lossy(&bytes[end + 5..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}
