//! The admin client: create, delete and describe topics, read topic and broker configs and
//! change topic configs, describe the cluster. Topic changes go to the controller (retried on
//! NOT_CONTROLLER and other retriable errors); config changes to any broker
//! (IncrementalAlterConfigs); descriptions come from Metadata, DescribeConfigs and
//! DescribeCluster. UnregisterBroker removes a broker's registration (any broker forwards it
//! to the controller).
//! Per-topic outcomes are returned one by one, so a caller can report each.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Client;
use super::error::{ClientError, KafkaApiError};
use super::metadata::{BrokerInfo, TopicInfo};

/// A topic to create; -1 partitions or replication factor means the broker's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// One config entry of a topic or broker, as DescribeConfigs answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's `config_source` (see [`config_source_name`]).
    pub source: i8,
    pub read_only: bool,
}

impl ConfigEntry {
    /// Set on the topic itself (not a broker or built-in default).
    pub fn is_topic_override(&self) -> bool {
        self.source == SOURCE_DYNAMIC_TOPIC
    }

    /// Nobody set it: the built-in default (Kafka's `ConfigEntry.isDefault`).
    pub fn is_default(&self) -> bool {
        self.source == SOURCE_DEFAULT
    }
}

/// Kafka's name of a DescribeConfigs `config_source`, as the Java AdminClient prints it.
pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// What a DescribeConfigs or an alter request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            Self::Topic(name) => (RESOURCE_TOPIC, name.clone()),
            Self::Broker(id) => (RESOURCE_BROKER, id.to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Topic(name) => format!("topic '{name}'"),
            Self::Broker(id) => format!("broker {id}"),
        }
    }
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigAlteration {
    /// Set the config to this value.
    Set(String, String),
    /// Remove the resource's own value, so the default applies again.
    Delete(String),
}

impl ConfigAlteration {
    fn wire(&self) -> AlterableConfig {
        let mut c = AlterableConfig::default();
        match self {
            Self::Set(name, value) => {
                c.name = StrBytes::from_string(name.clone());
                c.config_operation = OP_SET;
                c.value = Some(StrBytes::from_string(value.clone()));
            }
            Self::Delete(name) => {
                c.name = StrBytes::from_string(name.clone());
                c.config_operation = OP_DELETE;
                c.value = None;
            }
        }
        c
    }
}

/// The cluster as DescribeCluster (or Metadata) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    /// The listed brokers that are fenced (DescribeCluster v2; Metadata lists none).
    pub fenced: Vec<i32>,
}

/// Kafka's config resource types, the config sources the client tells apart, and the
/// IncrementalAlterConfigs operations it sends.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Topic and cluster administration.
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topics; one outcome per topic, in the order given.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let timeout_ms = self.client.config().request_timeout.as_millis() as i32;
        let resp = self
            .client
            .retry(|| async {
                let conn = self.client.controller_conn().await?;
                let mut req = CreateTopicsRequest::default();
                req.topics = topics.iter().map(creatable).collect();
                req.timeout_ms = timeout_ms;
                req.validate_only = validate_only;
                let resp = conn.request(&req).await?;
                // NOT_CONTROLLER for any topic: ask the right broker again.
                if let Some(t) = resp.topics.iter().find(|t| t.error_code == 41) {
                    return Err(ClientError::check(41, None, || {
                        format!("creating topic '{}'", t.name.0)
                    })
                    .unwrap_err());
                }
                Ok(resp)
            })
            .await?;
        let outcomes = topics
            .iter()
            .map(|t| {
                let r = resp.topics.iter().find(|r| r.name.0.as_str() == t.name);
                let outcome = match r {
                    None => Err(missing_answer(
                        "CreateTopics",
                        &format!("topic '{}'", t.name),
                    )),
                    Some(r) => {
                        let message = r.error_message.as_ref().map(|m| m.to_string());
                        ClientError::check(r.error_code, message, || {
                            format!("creating topic '{}'", t.name)
                        })
                    }
                };
                (t.name.clone(), outcome)
            })
            .collect();
        Ok(outcomes)
    }

    /// Deletes topics; one outcome per topic, in the order given.
    pub async fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let timeout_ms = self.client.config().request_timeout.as_millis() as i32;
        let resp = self
            .client
            .retry(|| async {
                let conn = self.client.controller_conn().await?;
                let version = conn.version(ApiKey::DeleteTopics)?;
                let mut req = DeleteTopicsRequest::default();
                if version >= 6 {
                    req.topics = names.iter().map(|n| delete_state(n)).collect();
                } else {
                    req.topic_names = names.iter().map(|n| topic_name(n)).collect();
                }
                req.timeout_ms = timeout_ms;
                let resp = conn.request_at(&req, version).await?;
                if resp.responses.iter().any(|t| t.error_code == 41) {
                    return Err(
                        ClientError::check(41, None, || "deleting topics".to_owned()).unwrap_err(),
                    );
                }
                Ok(resp)
            })
            .await?;
        let outcomes = names
            .iter()
            .map(|n| {
                let r = resp
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|x| x.0.as_str() == n));
                let outcome = match r {
                    None => Err(missing_answer("DeleteTopics", &format!("topic '{n}'"))),
                    Some(r) if r.error_code == 3 => Err(ClientError::UnknownTopic(n.clone())),
                    Some(r) => {
                        let message = r.error_message.as_ref().map(|m| m.to_string());
                        ClientError::check(r.error_code, message, || {
                            format!("deleting topic '{n}'")
                        })
                    }
                };
                (n.clone(), outcome)
            })
            .collect();
        Ok(outcomes)
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let (meta, _) = self.client.refresh(None).await?;
        Ok(meta.topics.values().cloned().collect())
    }

    /// The named topics; `UnknownTopic` for each one that does not exist.
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<TopicInfo, ClientError>>, ClientError> {
        let (meta, failed) = self.client.refresh(Some(names)).await?;
        let described = names
            .iter()
            .map(|n| match meta.topic(n) {
                Some(t) => Ok(t.clone()),
                None => match failed.iter().find(|f| &f.name == n).map(|f| f.error) {
                    Some(code) if code != 3 => Err(ClientError::Kafka(KafkaApiError::new(
                        code,
                        None,
                        format!("topic '{n}'"),
                    ))),
                    _ => Err(ClientError::UnknownTopic(n.clone())),
                },
            })
            .collect();
        Ok(described)
    }

    /// A topic's configs, or `None` if the broker does not serve DescribeConfigs.
    pub async fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> Result<Option<Vec<ConfigEntry>>, ClientError> {
        let conn = self.client.any_conn().await?;
        if conn.version(ApiKey::DescribeConfigs).is_err() {
            return Ok(None);
        }
        let resource = ConfigResource::Topic(topic.to_owned());
        self.describe_configs_on(&conn, &resource).await.map(Some)
    }

    /// Every config of a topic or broker with its value and source. A broker's configs are
    /// asked of that broker, as Kafka requires.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let conn = match resource {
            ConfigResource::Broker(id) => self.client.node_conn(*id).await?,
            ConfigResource::Topic(_) => self.client.any_conn().await?,
        };
        self.describe_configs_on(&conn, resource).await
    }

    async fn describe_configs_on(
        &self,
        conn: &super::conn::Connection,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let (resource_type, name) = resource.wire();
        let mut wanted = DescribeConfigsResource::default();
        wanted.resource_type = resource_type;
        wanted.resource_name = StrBytes::from_string(name.clone());
        wanted.configuration_keys = None;
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![wanted];
        let resp = self.client.retry(|| conn.request(&req)).await?;
        let Some(result) = resp.results.into_iter().next() else {
            return Err(missing_answer("DescribeConfigs", &resource.describe()));
        };
        if let ConfigResource::Topic(topic) = resource {
            if result.error_code == 3 {
                return Err(ClientError::UnknownTopic(topic.clone()));
            }
        }
        let message = result.error_message.as_ref().map(|m| m.to_string());
        ClientError::check(result.error_code, message, || {
            format!("configs of {}", resource.describe())
        })?;
        let entries = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
            })
            .collect();
        Ok(entries)
    }

    /// Changes some configs of a resource and leaves the others as they are
    /// (IncrementalAlterConfigs); a refused value comes back as the broker's INVALID_CONFIG
    /// error and message.
    pub async fn incremental_alter_configs(
        &self,
        resource: &ConfigResource,
        alterations: &[ConfigAlteration],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let (resource_type, name) = resource.wire();
        let mut wanted = AlterConfigsResource::default();
        wanted.resource_type = resource_type;
        wanted.resource_name = StrBytes::from_string(name);
        wanted.configs = alterations.iter().map(ConfigAlteration::wire).collect();
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![wanted];
        req.validate_only = validate_only;
        let resp = self
            .client
            .retry(|| async {
                let conn = match resource {
                    ConfigResource::Broker(id) => self.client.node_conn(*id).await?,
                    ConfigResource::Topic(_) => self.client.any_conn().await?,
                };
                conn.request(&req).await
            })
            .await?;
        let Some(result) = resp.responses.into_iter().next() else {
            return Err(missing_answer(
                "IncrementalAlterConfigs",
                &resource.describe(),
            ));
        };
        if let ConfigResource::Topic(topic) = resource {
            if result.error_code == 3 {
                return Err(ClientError::UnknownTopic(topic.clone()));
            }
        }
        let message = result.error_message.as_ref().map(|m| m.to_string());
        ClientError::check(result.error_code, message, || {
            format!("altering the configs of {}", resource.describe())
        })
    }

    /// Removes broker `id`'s registration (Kafka's UnregisterBroker, as
    /// `kafka-cluster.sh unregister`): it stops being listed; its replicas stay assigned.
    pub async fn unregister_broker(&self, id: i32) -> Result<(), ClientError> {
        let resp = self
            .client
            .retry(|| async {
                let conn = self.client.any_conn().await?;
                let version = conn.version(ApiKey::UnregisterBroker)?;
                let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
                let resp = conn.request_at(&req, version).await?;
                if resp.error_code == 41 {
                    // NOT_CONTROLLER: retriable, the broker found no controller leader.
                    ClientError::check(41, None, || "unregistering a broker".to_owned())?;
                }
                Ok(resp)
            })
            .await?;
        let message = resp.error_message.as_ref().map(|m| m.to_string());
        ClientError::check(resp.error_code, message, || {
            format!("unregistering broker {id}")
        })
    }

    /// Brokers, controller and cluster id: DescribeCluster if the broker serves it, else
    /// Metadata.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let conn = self.client.any_conn().await?;
        if conn.version(ApiKey::DescribeCluster).is_err() {
            let (meta, _) = self.client.refresh(Some(&[])).await?;
            return Ok(ClusterDescription {
                cluster_id: meta.cluster_id.clone(),
                controller_id: meta.controller_id,
                brokers: meta.brokers.values().cloned().collect(),
                fenced: Vec::new(),
            });
        }
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let resp = self.client.retry(|| conn.request(&req)).await?;
        let message = resp.error_message.as_ref().map(|m| m.to_string());
        ClientError::check(resp.error_code, message, || {
            "describing the cluster".to_owned()
        })?;
        let mut brokers: Vec<BrokerInfo> = resp
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let fenced = resp
            .brokers
            .iter()
            .filter(|b| b.is_fenced)
            .map(|b| b.broker_id.0)
            .collect();
        Ok(ClusterDescription {
            cluster_id: Some(resp.cluster_id.to_string()),
            controller_id: resp.controller_id.0,
            brokers,
            fenced,
        })
    }
}

fn topic_name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_owned()))
}

fn delete_state(n: &str) -> DeleteTopicState {
    let mut s = DeleteTopicState::default();
    s.name = Some(topic_name(n));
    s
}

fn creatable(t: &NewTopic) -> CreatableTopic {
    let mut c = CreatableTopic::default();
    c.name = topic_name(&t.name);
    c.num_partitions = t.partitions;
    c.replication_factor = t.replication_factor;
    c.configs = t
        .configs
        .iter()
        .map(|(k, v)| {
            let mut e = CreatableTopicConfig::default();
            e.name = StrBytes::from_string(k.clone());
            e.value = Some(StrBytes::from_string(v.clone()));
            e
        })
        .collect();
    c
}

fn missing_answer(api: &str, what: &str) -> ClientError {
    ClientError::Protocol {
        peer: "the broker".into(),
        reason: format!("the {api} answer says nothing about {what}"),
    }
}
