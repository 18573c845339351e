//! The request body read timeout ([`ConnLimits::body_read_timeout`](crate::ConnLimits)): a
//! body that delivers no frame for that long fails with [`BodyTimeoutError`].
//!
//! Same contract as `tower_http::timeout::TimeoutBody`, armed lazily: that one creates and
//! registers a timer before every frame, so a small request whose body is already buffered
//! pays two timer registrations and cancellations (a lock on the runtime's timer wheel each)
//! for nothing. This one polls the body first and starts the timer only when the body has to
//! wait for the network (issue 24: every write of the hot path has a small body).

use http_body::{Body, Frame};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{sleep, Sleep};

/// Boxed error of a wrapped body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A request body with a read timeout between frames (see the module doc).
    pub struct BodyTimeout<B> {
        timeout: Duration,
        #[pin]
        sleep: Option<Sleep>,
        #[pin]
        body: B,
    }
}

impl<B> BodyTimeout<B> {
    /// `body`, failing when no frame arrives for `timeout`.
    pub fn new(timeout: Duration, body: B) -> Self {
        Self {
            timeout,
            sleep: None,
            body,
        }
    }
}

impl<B> Body for BodyTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            // The next wait starts from the next pending poll.
            this.sleep.set(None);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().as_pin_mut().is_none() {
            this.sleep.set(Some(sleep(*this.timeout)));
        }
        if let Some(timer) = this.sleep.as_mut().as_pin_mut() {
            if timer.poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(BodyTimeoutError))));
            }
        }
        Poll::Pending
    }
}

/// A request body that stalled for longer than the body read timeout.
#[derive(Debug)]
pub struct BodyTimeoutError;

impl std::error::Error for BodyTimeoutError {}

impl std::fmt::Display for BodyTimeoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text of `tower_http`'s timeout, which answers used to carry.
        write!(f, "data was not received within the designated timeout")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use std::future::poll_fn;

    /// A body that yields one frame, then waits forever.
    struct Stalls(bool);

    impl Body for Stalls {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
            }
        }
    }

    #[tokio::test]
    async fn a_ready_body_starts_no_timer_and_a_stalled_one_times_out() {
        let mut body = Box::pin(BodyTimeout::new(Duration::from_millis(50), Stalls(false)));
        let first = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(first.unwrap().unwrap().is_data());
        assert!(body.sleep.is_none(), "no timer for a frame that was ready");
        let started = tokio::time::Instant::now();
        let second = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        let err = second.unwrap().unwrap_err();
        assert!(err.is::<BodyTimeoutError>());
        assert_eq!(
            err.to_string(),
            "data was not received within the designated timeout"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
