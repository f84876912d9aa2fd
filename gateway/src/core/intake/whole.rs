//! Sealing a submission whose parts are all in memory: every target's
//! envelope, the parts encrypted once for the targets that receive them as
//! sent, an own package for an xdomea target, an own envelope for one on
//! format 1.

use ozg_adapter_sdk::envelope::{
    build_envelope_v1, build_envelopes, seal_manifest, sha512_hex, EnvelopeHeader,
};
use ozg_adapter_sdk::jose::JoseError;
use ozg_adapter_sdk::{Manifest, ManifestPart};

use super::{internal, Incoming, Intake, Part, Routes, Sender};
use crate::core::refusal::Refusal;
use crate::model::routing::Payload;
use crate::model::submission::{envelope_checksum, message_id, NewDelivery, SharedPiece};

impl Intake {
    /// Every target's delivery, the parts encrypted from memory.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encrypt_whole(
        &self,
        routes: &Routes,
        incoming: &Incoming,
        targets: &[String],
        id: &uuid::Uuid,
        received_at: &str,
        manifest: &Manifest,
        sealed: &str,
        seal: &ozg_adapter_sdk::SealKey,
    ) -> Result<(Vec<NewDelivery>, Vec<SharedPiece>), Refusal> {
        let reply = match &incoming.sender {
            Sender::Reply { of, .. } => Some(of),
            Sender::Portal(_) => None,
        };
        let mut bodies: Vec<&[u8]> = vec![incoming.data.data.as_ref()];
        bodies.extend(incoming.attachments.iter().map(|a| a.data.as_ref()));
        // Targets that receive the parts as sent share one ciphertext per part;
        // an xdomea target gets its own package, encrypted for it alone.
        let mut raw = Vec::new();
        let mut deliveries = Vec::with_capacity(targets.len());
        for target in targets {
            let cert = routes
                .targets
                .get(target)
                .ok_or_else(|| internal("route names a target without certificate", target))?;
            let header = EnvelopeHeader {
                message_id: message_id(id, target),
                target: target.clone(),
                created_at: received_at.to_owned(),
            };
            // A reply is the parts as sent: an xdomea 0201 package is an application.
            let payload = match reply {
                Some(_) => Payload::Raw,
                None => routes.payloads.get(target).copied().unwrap_or_default(),
            };
            let format_1 = routes.format_1.contains(target);
            // An envelope of this target's own: format 1, or an xdomea package.
            let own = |header, m: &Manifest, sealed: &str, bodies: &[&[u8]]| {
                let envelope = if format_1 {
                    build_envelope_v1(header, m, sealed, bodies, cert)?.to_json()
                } else {
                    let built = build_envelopes(&[(header, &**cert)], m, sealed, bodies)?;
                    built.envelopes[0].assemble(&built.shared)
                };
                Ok::<_, JoseError>(NewDelivery::whole(
                    message_id(id, target),
                    target.clone(),
                    envelope,
                ))
            };
            match payload {
                Payload::Raw if !format_1 => raw.push((header, &**cert)),
                Payload::Raw => deliveries.push(
                    own(header, manifest, sealed, &bodies)
                        .map_err(|e| internal("encryption failed", &e))?,
                ),
                Payload::Xdomea => {
                    let (m, zip) = xdomea_manifest(manifest, incoming, target)
                        .map_err(|e| internal("building the xdomea package failed", &e))?;
                    let sealed =
                        seal_manifest(&m, seal).map_err(|e| internal("sealing failed", &e))?;
                    deliveries.push(
                        own(header, &m, &sealed, &[zip.as_slice()])
                            .map_err(|e| internal("encryption failed", &e))?,
                    );
                }
            }
        }
        let built = build_envelopes(&raw, manifest, sealed, &bodies)
            .map_err(|e| internal("encryption failed", &e))?;
        let mut shared = Vec::new();
        if let [(header, _)] = &raw[..] {
            // One target: nothing to share, the envelope is stored whole.
            for e in &built.envelopes {
                let envelope = e.assemble(&built.shared);
                deliveries.push(NewDelivery::whole(
                    e.message_id.clone(),
                    header.target.clone(),
                    envelope,
                ));
            }
        } else {
            for (e, (header, _)) in built.envelopes.into_iter().zip(&raw) {
                deliveries.push(NewDelivery {
                    message_id: e.message_id,
                    target: header.target.clone(),
                    envelope_crc32: envelope_checksum(&e.own),
                    envelope: e.own,
                    splices: e.splices,
                });
            }
            shared = built.shared.into_iter().map(SharedPiece::held).collect();
        }
        // In the order of the route's targets, as before.
        deliveries.sort_by_key(|d| targets.iter().position(|t| *t == d.target));
        Ok((deliveries, shared))
    }
}

/// The manifest of an xdomea target's envelope: the submission's, with one part,
/// the `Geschaeftsgang.Geschaeftsgang.0201` package built from every part.
fn xdomea_manifest(
    manifest: &Manifest,
    incoming: &Incoming,
    target: &str,
) -> Result<(Manifest, Vec<u8>), crate::core::xdomea::XdomeaError> {
    use crate::core::xdomea::{build, Application, File};
    fn file(p: &Part) -> File<'_> {
        File {
            name: p.filename.as_deref(),
            media_type: &p.media_type,
            bytes: &p.data,
        }
    }
    let attachments: Vec<File> = incoming.attachments.iter().map(file).collect();
    let package = build(
        &Application {
            submission_id: &manifest.submission_id,
            received_at: &manifest.received_at,
            portal: &manifest.sender,
            leistung: &manifest.leistung,
            destination: &manifest.destination,
            target,
            data: file(&incoming.data),
            attachments: &attachments,
        },
        &manifest.received_at,
    )?;
    let part = ManifestPart {
        id: "xdomea-0201".into(),
        media_type: "application/zip".into(),
        filename: Some(package.file_name),
        size: package.zip.len() as u64,
        sha512: sha512_hex(&package.zip),
    };
    Ok((
        Manifest {
            parts: vec![part],
            ..manifest.clone()
        },
        package.zip,
    ))
}
