fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "certs-example".into());
    ozg_gateway::demo_pki::write_demo_pki(std::path::Path::new(&out))
}
