//! `hyperclay man DIR`: manual pages generated from the same definitions as `--help`
//! (clap_mangen), one for the program and one per command (`man hyperclay-mount`).

use std::path::Path;

use anyhow::Context;

pub fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_page(&command, dir, &mut written)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("hyperclay-{}", sub.get_name());
        let sub = sub.clone().name(name).version(crate::VERSION);
        write_page(&sub, dir, &mut written)?;
    }
    println!(
        "hyperclay: wrote {} manual pages in {}",
        written.len(),
        dir.display()
    );
    Ok(())
}

fn write_page(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let file = format!("{}.1", command.get_name());
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut roff)
        .with_context(|| format!("rendering {file}"))?;
    let path = dir.join(&file);
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    written.push(file);
    Ok(())
}
