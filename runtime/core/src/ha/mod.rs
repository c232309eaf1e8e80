//! 1+1 high availability, as pure state machines: junctions, roles,
//! liveness, barriers and rejoin. Inputs are `handle_*(now, ..)`, outputs
//! `poll_*()`; time is a parameter.
