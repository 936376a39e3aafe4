//! Argument definitions (clap) and dispatch to the engine.

mod build;
mod container;
mod error;
mod image;
mod network;
mod registry;
mod system;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata_engine::{Engine, EngineOptions};

pub use error::CliError;

#[derive(Parser)]
#[command(name = "strata", version, about = "A container engine compatible with Docker, built around data")]
#[command(disable_help_subcommand = true)]
pub struct Cli {
    /// Root of persisted state.
    #[arg(long, global = true, env = "STRATA_DATA_ROOT", default_value = strata_engine::DEFAULT_DATA_ROOT)]
    pub data_root: PathBuf,
    /// Storage driver for a new data root (overlay2 or vfs).
    #[arg(long, global = true, env = "STRATA_STORAGE_DRIVER")]
    pub storage_driver: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(container::CreateArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(container::CreateArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container::CpArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(container::AttachArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(container::StatsArgs),
    /// Update configuration of one or more containers
    Update(container::UpdateArgs),
    /// Pause all processes within one or more containers
    Pause(container::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::PauseArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    #[command(name = "__supervise", hide = true)]
    Supervise {
        id: String,
        #[arg(long)]
        attach: Option<String>,
    },
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// List images
    Images(image::ListArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Return low-level information on Docker objects
    Inspect(image::InspectArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage strata
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Run a registry (OCI distribution) server, and collect its garbage
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    Build(build::BuildArgs),
    Import(image::ImportArgs),
    Load(image::LoadArgs),
    Save(image::SaveArgs),
    #[command(alias = "list")]
    Ls(image::ListArgs),
    Tag(image::TagArgs),
    #[command(alias = "remove")]
    Rm(image::RmiArgs),
    History(image::HistoryArgs),
    Inspect(image::ImageInspectArgs),
    Prune(image::PruneArgs),
    /// Mount a read-only view of an image and print its path (as podman does)
    Mount { image: String },
    /// Unmount a view made by `image mount`
    #[command(alias = "umount")]
    Unmount { image: String },
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    #[command(disable_help_flag = true)]
    Run(container::CreateArgs),
    #[command(disable_help_flag = true)]
    Create(container::CreateArgs),
    Start(container::StartArgs),
    Stop(container::StopArgs),
    Restart(container::StopArgs),
    Kill(container::KillArgs),
    Wait(container::WaitArgs),
    #[command(alias = "remove")]
    Rm(container::RmArgs),
    #[command(alias = "ps", alias = "list")]
    Ls(container::PsArgs),
    Logs(container::LogsArgs),
    Diff(container::DiffArgs),
    Export(container::ExportArgs),
    Rename(container::RenameArgs),
    Exec(container::ExecArgs),
    Commit(container::CommitArgs),
    Cp(container::CpArgs),
    Attach(container::AttachArgs),
    Top(container::TopArgs),
    Stats(container::StatsArgs),
    Update(container::UpdateArgs),
    Pause(container::PauseArgs),
    Unpause(container::PauseArgs),
    Inspect(image::InspectArgs),
    Prune(container::ContainerPruneArgs),
    Port(network::PortArgs),
}

pub fn open_engine(cli: &Cli) -> Result<Engine, CliError> {
    Ok(Engine::open(&EngineOptions { data_root: cli.data_root.clone(), storage_driver: cli.storage_driver.clone() })?)
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    if let Command::Supervise { .. } = &cli.command {
        // Detach from whoever started us: that process waits only for this fork. Done
        // before the database is opened, so no connection crosses the fork.
        // SAFETY: single-threaded here; the parent only calls _exit.
        unsafe {
            match libc::fork() {
                -1 => return Ok(125),
                0 => {}
                _ => libc::_exit(0),
            }
        }
    }
    if let Command::Registry(c) = cli.command {
        return registry::run(c);
    }
    let engine = open_engine(&cli)?;
    let e = &engine;
    match cli.command {
        Command::Supervise { id, attach } => Ok(container::supervise(e, &id, attach.as_deref())),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => container::run(e, a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => container::create(e, a),
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => container::start(e, a),
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => container::stop(e, a),
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => container::restart(e, a),
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => container::kill(e, a),
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => container::wait(e, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => container::rm(e, a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => container::ps(e, a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => container::logs(e, a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => container::diff(e, a),
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => container::export(e, a),
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => container::rename(e, a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => container::exec(e, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => container::commit(e, a),
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => container::cp(e, a),
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => container::attach(e, a),
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => container::top(e, a),
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => container::stats(e, a),
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => container::update(e, a),
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => container::pause(e, a),
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => container::unpause(e, a),
        Command::Container(ContainerCommand::Inspect(a)) => image::inspect_containers(e, a),
        Command::Container(ContainerCommand::Prune(a)) => container::prune(e, a),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(e, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => image::import(e, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => image::load(e, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => image::save(e, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => image::list(e, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => image::tag(e, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => image::rmi(e, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => image::history(e, a),
        Command::Inspect(a) => image::inspect(e, a),
        Command::Image(ImageCommand::Inspect(a)) => image::image_inspect(e, a),
        Command::Image(ImageCommand::Prune(a)) => image::prune(e, a),
        Command::Image(ImageCommand::Mount { image }) => {
            println!("{}", e.mount_image(&e.images().resolve(&image)?)?.display());
            Ok(0)
        }
        Command::Image(ImageCommand::Unmount { image }) => {
            e.unmount_image(&e.images().resolve(&image)?)?;
            Ok(0)
        }
        Command::System(c) => system::run(e, c),
        Command::Volume(c) => volume::run(e, c),
        Command::Network(c) => network::run(e, c),
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => network::port(e, a),
        Command::Registry(_) => unreachable!("dispatched before the engine opens"),
    }
}

/// Prints a list command's rows: `-q` prints the IDs, otherwise the user's `--format` or
/// the command's default table.
pub fn print_list(quiet: bool, fmt: Option<&str>, spec: &crate::format::ListFormat, rows: &[serde_json::Value]) -> Result<u8, CliError> {
    if quiet {
        let mut out = String::with_capacity(rows.len() * 13);
        for r in rows {
            out.push_str(r["ID"].as_str().unwrap_or(""));
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    print!("{}", crate::format::render_list(fmt, spec, rows).map_err(|e| CliError::usage(e.to_string()))?);
    Ok(0)
}

/// Flag errors exit 125 with docker's wording; `--help` and `--version` exit 0.
pub fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::ExitCode::SUCCESS
        }
        _ => {
            let _ = e.print();
            std::process::ExitCode::from(125)
        }
    }
}
