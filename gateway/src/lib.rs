pub mod demo_pki;
