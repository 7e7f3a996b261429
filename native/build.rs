//! Link settings napi-rs needs for a Node addon (cdylib).
fn main() {
    napi_build::setup();
}
