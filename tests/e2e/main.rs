//! End-to-end tests against a real `xcatd` over real TLS.
mod attacks;
mod bootserve;
mod capimage;
mod capimage_busy;
mod capimage_faults;
mod capimage_hostile;
mod capimage_options;
mod daemon;
mod geninitrd;
mod load;
mod makedhcp;
mod nodeset;
mod packimage;
mod probe_initrd;
mod pxe_boot;
mod tables;
mod xdsh;
