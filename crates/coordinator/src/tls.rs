//! Mutual TLS on the Raft routes: a verified client certificate that names a coordinator peer
//! stands in for the peer secret.
//!
//! The TLS listener ([`varpulis_tls::serve`]) puts the client's verified certificate into each
//! request as a [`VerifiedClientCert`]. Workers present certificates from the same CA, so being
//! signed by it is not enough: only a certificate valid for the operator-chosen name
//! `--tls-peer-name` (a DNS SAN) becomes a [`PeerCertificate`], which `crates/raft`'s
//! authorization accepts on the peer RPCs (never on the admin routes).

use axum::extract::Request;
use axum::middleware::Next;
use axum::Router;
use varpulis_raft::PeerCertificate;
use varpulis_tls::VerifiedClientCert;

/// Wraps the Raft `router` so that requests whose client certificate is valid for `peer_name`
/// carry a [`PeerCertificate`]. Without a peer name the router is returned unchanged.
pub fn peer_certificates(router: Router, peer_name: Option<String>) -> Router {
    let Some(name) = peer_name.filter(|n| !n.is_empty()) else {
        return router;
    };
    router.layer(axum::middleware::from_fn(
        move |mut req: Request, next: Next| {
            let name = name.clone();
            async move {
                mark_peer(&mut req, &name);
                next.run(req).await
            }
        },
    ))
}

/// Inserts a [`PeerCertificate`] when the request's verified certificate is valid for `name`
/// (and removes any that did not come from this check).
fn mark_peer(req: &mut Request, name: &str) {
    req.extensions_mut().remove::<PeerCertificate>();
    let is_peer = req
        .extensions()
        .get::<VerifiedClientCert>()
        .is_some_and(|cert| cert.is_valid_for(name));
    if is_peer {
        req.extensions_mut().insert(PeerCertificate {
            identity: name.to_string(),
        });
    }
}
