//! The registry routes against a real Confluent client: `schema_registry_converter`
//! registers, fetches, encodes and decodes Helios events through them, and plain HTTP
//! checks that compatibility is enforced.

use std::collections::BTreeMap;
use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
use helios_schemas::registry::{EVENTS_VALUE_SUBJECT, RemoteRegistry};
use helios_schemas::{AvroRecord, Event, EventCodec, Registry};
use schema_registry_converter::async_impl::easy_avro::{EasyAvroDecoder, EasyAvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::{Value, json};

fn event() -> Event {
    Event {
        id: "evt-1".into(),
        source: "https://github.com/acme/helios".into(),
        kind: "com.github.push".into(),
        subject: "acme/helios".into(),
        time: 1_795_424_400_123_456,
        received_at: 1_795_424_400_200_000,
        attrs: BTreeMap::from([
            ("branch".into(), "main".into()),
            ("actor".into(), "ada".into()),
        ]),
        value: Some(3.0),
        payload: Some(r#"{"commits":3}"#.into()),
    }
}

/// The Event schema with one more field appended.
fn event_schema_with(field: Value) -> String {
    let mut schema: Value = serde_json::from_str(Event::SCHEMA_JSON).unwrap();
    schema["fields"].as_array_mut().unwrap().push(field);
    schema.to_string()
}

async fn serve(registry: Arc<Registry>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = helios_query_api::registry::router(registry);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn confluent_client_roundtrip_and_compatibility() {
    // reqwest has rustls without a provider of its own (ADR-018): ring, process-wide.
    helios_schemas::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    let url = serve(registry.clone()).await;
    let settings = || {
        SrSettings::new_builder(url.clone())
            .no_proxy()
            .build()
            .unwrap()
    };

    // Register through the client's TopicNameStrategy and encode with apache-avro.
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        "helios.events".into(),
        false,
        SuppliedSchema::new(
            Some("io.helios.Event".into()),
            SchemaType::Avro,
            Event::SCHEMA_JSON.into(),
        ),
    );
    let encoder = EasyAvroEncoder::new(settings());
    let theirs = encoder.encode_struct(event(), &strategy).await.unwrap();
    let id = u32::from_be_bytes(theirs[1..5].try_into().unwrap());
    assert_eq!(
        registry
            .version(EVENTS_VALUE_SUBJECT, "latest".parse().unwrap())
            .unwrap()
            .id,
        id
    );

    // Our codec reads their bytes, and their decoder reads ours.
    let remote = Arc::new(RemoteRegistry::new(&url).unwrap());
    let codec = EventCodec::with_source(id, remote.clone());
    assert_eq!(codec.decode(&theirs).unwrap(), event());
    let ours = codec.encode(&event());
    assert_eq!(
        ours, theirs,
        "hand-written encoder and apache-avro agree on the wire"
    );
    let decoder = EasyAvroDecoder::new(settings());
    let decoded = decoder.decode(Some(&ours)).await.unwrap();
    assert_eq!(
        apache_avro::from_value::<Event>(&decoded.value).unwrap(),
        event()
    );

    // Compatibility through plain HTTP.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let subject_url = format!("{url}/subjects/{EVENTS_VALUE_SUBJECT}");
    let put = http
        .put(format!("{url}/config/{EVENTS_VALUE_SUBJECT}"))
        .json(&json!({"compatibility": "BACKWARD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        put.json::<Value>().await.unwrap(),
        json!({"compatibility": "BACKWARD"})
    );

    let required = event_schema_with(json!({"name": "host", "type": "string"}));
    let res = http
        .post(format!("{subject_url}/versions"))
        .json(&json!({ "schema": required }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error_code"], 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("host"), "{body}");

    let optional =
        event_schema_with(json!({"name": "host", "type": "string", "default": "unknown"}));
    let res = http
        .post(format!("{subject_url}/versions"))
        .json(&json!({ "schema": optional }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new_id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap() as u32;
    assert_ne!(new_id, id);
    let versions: Value = http
        .get(format!("{subject_url}/versions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, json!([1, 2]));

    // An event written with the new schema decodes through resolution against the
    // built-in one, with the writer schema fetched from the registry by id.
    let v2 = apache_avro::Schema::parse_str(&optional).unwrap();
    let mut fields = match apache_avro::to_value(event()).unwrap() {
        AvroValue::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    };
    fields.push(("host".into(), AvroValue::String("box-1".into())));
    let value = AvroValue::Record(fields).resolve(&v2).unwrap();
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&v2)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let framed = helios_schemas::wire::frame(new_id, &body);
    assert_eq!(codec.decode_async(&framed).await.unwrap(), event());

    // The same schema fetched under a foreign id still takes the fast path.
    let other = EventCodec::with_source(999, remote.clone());
    assert_eq!(other.decode_async(&theirs).await.unwrap(), event());

    // The client-side registration helper reuses the id of an identical schema.
    assert_eq!(
        remote
            .register("mirror-value", Event::SCHEMA_JSON)
            .await
            .unwrap(),
        id
    );
}
