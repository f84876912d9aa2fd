//! The XTA 2 listener (web service 2.1.1, SOAP 1.2 over HTTPS with client
//! certificates), for Fachverfahren that fetch their messages from a message
//! box and send with XTA. So far: [`soap`], reading request envelopes and
//! writing faults; the ports follow.

pub mod soap;
