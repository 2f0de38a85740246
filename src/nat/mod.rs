//! Sans-IO NAT traversal state machines.
