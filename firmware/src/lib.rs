//! tandem-firmware: drivers for the sensors on tandem gateways.
#![no_std]
