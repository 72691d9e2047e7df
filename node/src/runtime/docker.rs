//! [`ContainerRuntime`] on a Docker Engine (bollard): the calls the node
//! made directly before the runtime was a trait, with the same options.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
    CreateImageInfo, ExecConfig, ImageInspect, ImageSummary,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ImportImageOptionsBuilder, InspectNetworkOptions, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
    TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    Bridge, ContainerRuntime, EngineInfo, ExecOutcome, ListFilter, LogOptions, RuntimeError,
};

/// The node's Docker Engine.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// A runtime on the engine at `host` (`unix:///…`, `tcp://…`); does not
    /// connect yet (see [`ContainerRuntime::ping`]).
    pub fn connect(host: &str) -> Result<Self, RuntimeError> {
        Ok(Self {
            docker: Docker::connect_with_host(host)?,
        })
    }

    /// The local engine (`DOCKER_HOST` or the default socket).
    pub fn local() -> Result<Self, RuntimeError> {
        Ok(Self {
            docker: Docker::connect_with_local_defaults()?,
        })
    }
}

/// Docker's grace period parameter: whole seconds.
fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait::async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker.ping().await?;
        Ok(())
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        let info = self.docker.info().await?;
        Ok(EngineInfo {
            cpus: u64::try_from(info.ncpu.unwrap_or(1)).unwrap_or(1),
            memory_bytes: u64::try_from(info.mem_total.unwrap_or(0)).unwrap_or(0),
        })
    }

    async fn bridge(&self) -> Option<Bridge> {
        let configs = self
            .docker
            .inspect_network("bridge", None::<InspectNetworkOptions>)
            .await
            .ok()?
            .ipam?
            .config?;
        let subnets: Vec<String> = configs.iter().filter_map(|c| c.subnet.clone()).collect();
        let mut gateways: Vec<IpAddr> = configs
            .iter()
            .filter_map(|c| c.gateway.as_ref()?.parse().ok())
            .collect();
        // Some Docker versions leave the gateway out: it is the subnet's
        // first address (172.17.0.1 for 172.17.0.0/16).
        if gateways.is_empty() {
            gateways.extend(subnets.iter().find_map(|s| {
                let (net, _) = s.split_once('/')?;
                let v4: std::net::Ipv4Addr = net.parse().ok()?;
                Some(IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::from(v4).checked_add(1)?,
                )))
            }));
        }
        Some(Bridge { gateways, subnets })
    }

    async fn list_containers(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let mut filters = HashMap::from([("label".to_string(), filter.labels.clone())]);
        if filter.running_only {
            filters.insert("status".to_string(), vec!["running".to_string()]);
        }
        let opts = ListContainersOptionsBuilder::new()
            .all(!filter.running_only)
            .filters(&filters)
            .build();
        Ok(self.docker.list_containers(Some(opts)).await?)
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInspectResponse, RuntimeError> {
        Ok(self.docker.inspect_container(id, None).await?)
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        Ok(self.docker.create_container(Some(opts), body).await?.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        Ok(self.docker.start_container(id, None).await?)
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let opts = StopContainerOptionsBuilder::new().t(secs(grace)).build();
        Ok(self.docker.stop_container(id, Some(opts)).await?)
    }

    async fn restart_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let opts = RestartContainerOptionsBuilder::new().t(secs(grace)).build();
        Ok(self.docker.restart_container(id, Some(opts)).await?)
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        Ok(self.docker.remove_container(id, Some(opts)).await?)
    }

    fn container_deaths(
        &self,
        labels: Vec<String>,
    ) -> BoxStream<'static, Result<(), RuntimeError>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            ("label".to_string(), labels),
        ]);
        let opts = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker
            .events(Some(opts))
            .map(|r| r.map(|_| ()).map_err(RuntimeError::from))
            .boxed()
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        max_output: usize,
    ) -> Result<ExecOutcome, RuntimeError> {
        let created = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let mut output = Vec::new();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self.docker.start_exec(&created.id, None).await?
        {
            while let Some(chunk) = stream.next().await {
                let bytes = chunk?.into_bytes();
                let room = max_output.saturating_sub(output.len());
                output.extend_from_slice(bytes.get(..room).unwrap_or(&bytes));
            }
        }
        // The exit code can lag the end of the output by a moment.
        for _ in 0..20 {
            let inspect = self.docker.inspect_exec(&created.id).await?;
            match (inspect.running, inspect.exit_code) {
                (Some(true), _) | (_, None) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                (_, Some(code)) => {
                    return Ok(ExecOutcome {
                        exit_code: Some(code),
                        output,
                    })
                }
            }
        }
        Ok(ExecOutcome {
            exit_code: None,
            output,
        })
    }

    async fn stats_once(&self, id: &str) -> Result<ContainerStatsResponse, RuntimeError> {
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = std::pin::pin!(self.docker.stats(id, Some(opts)));
        match stream.next().await {
            Some(r) => Ok(r?),
            None => Err(RuntimeError::Other("docker sent no sample".into())),
        }
    }

    fn logs(&self, name: &str, o: LogOptions) -> BoxStream<'static, Result<Bytes, RuntimeError>> {
        let tail = o.tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let mut opts = LogsOptionsBuilder::new()
            .follow(o.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(o.timestamps)
            .tail(&tail);
        if let Some(s) = o.since {
            opts = opts.since(s);
        }
        self.docker
            .logs(name, Some(opts.build()))
            .map(|r| r.map(|o| o.into_bytes()).map_err(RuntimeError::from))
            .boxed()
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageInspect, RuntimeError> {
        Ok(self.docker.inspect_image(image).await?)
    }

    async fn list_images(&self) -> Result<Vec<ImageSummary>, RuntimeError> {
        Ok(self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::new().build()))
            .await?)
    }

    fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<DockerCredentials>,
    ) -> BoxStream<'static, Result<CreateImageInfo, RuntimeError>> {
        let opts = CreateImageOptionsBuilder::new()
            .from_image(repository)
            .tag(tag)
            .build();
        self.docker
            .create_image(Some(opts), None, credentials)
            .map(|r| r.map_err(RuntimeError::from))
            .boxed()
    }

    fn export_image(&self, id: &str) -> BoxStream<'static, Result<Bytes, RuntimeError>> {
        self.docker
            .export_image(id)
            .map(|r| r.map_err(RuntimeError::from))
            .boxed()
    }

    async fn load_image(
        &self,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), RuntimeError> {
        let mut load = self.docker.import_image_stream(
            ImportImageOptionsBuilder::default().quiet(true).build(),
            archive,
            None,
        );
        while let Some(r) = load.next().await {
            r?;
        }
        Ok(())
    }

    async fn tag_image(&self, id: &str, repository: &str, tag: &str) -> Result<(), RuntimeError> {
        let opts = TagImageOptionsBuilder::default()
            .repo(repository)
            .tag(tag)
            .build();
        Ok(self.docker.tag_image(id, Some(opts)).await?)
    }
}
