//! Placeholder: this component is built by its own issue.
#![no_std]
