pub mod fleetlock;
