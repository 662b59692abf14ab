//! The xCAT wire protocol, and the only crate that knows its XML element names.
//!
//! * [`Element`] is a generic, order-preserving XML element tree: every element of
//!   a request or response may repeat, and unknown elements must survive a round trip.
//! * [`Request`] is the typed view of an `<xcatrequest>` document.
//! * [`Response`] is one `<xcatresponse>` document, built with typed helpers;
//!   [`Response::shown`] is what a client prints of it ([`view`]).
//! * [`codec`] encodes/decodes documents in the layout xCAT clients expect.
//! * [`framing`] reads documents off a byte stream with size and time limits.
//! * [`client`] is the async TLS client used by `xcatclient` and by tests.
//!
//! [`framing`] and [`client`] need the `async` feature (the default); without
//! it the crate is the types and the codec (the static initrd helper's use).
#![forbid(unsafe_code)]

#[cfg(feature = "async")]
pub mod client;
pub mod codec;
#[cfg(feature = "async")]
pub mod framing;
mod types;
pub mod view;

pub use codec::{decode_request, decode_response, encode_request, encode_response, CodecError};
#[cfg(feature = "async")]
pub use framing::{FrameError, FrameLimits, RequestReader, ResponseReader};
pub use types::{Element, NodeRecord, Request, Response};
pub use view::{DataText, NodeLine, NodeShown, Shown};
