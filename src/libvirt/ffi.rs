//! libvirt's client library, loaded when first needed (`dlopen` of `libvirt.so.0`) rather
//! than linked: libvirt brings some 57 shared objects (glib, gnutls, libxml2, curl, krb5,
//! ICU...) whose loading costs every process that links them 10-20 ms before `main`, and most
//! of virtmasq's commands (`filter`, `status`, `check-config`...) never call libvirt.
//!
//! Only the calls virtmasq makes are bound. [`Connection`] and [`Net`] free what libvirt
//! returned when dropped; every failure carries libvirt's own message. These calls block.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

/// The library's soname, as Debian's `libvirt0` and Fedora's `libvirt-libs` install it.
pub const SONAME: &str = "libvirt.so.0";

/// `VIR_NETWORK_XML_INACTIVE`: the persistent definition rather than the live one.
pub const XML_INACTIVE: c_uint = 1;

type ConnPtr = *mut c_void;
type NetPtr = *mut c_void;

/// The entry points, resolved once.
struct Lib {
    open: unsafe extern "C" fn(*const c_char) -> ConnPtr,
    close: unsafe extern "C" fn(ConnPtr) -> c_int,
    list_all: unsafe extern "C" fn(ConnPtr, *mut *mut NetPtr, c_uint) -> c_int,
    lookup: unsafe extern "C" fn(ConnPtr, *const c_char) -> NetPtr,
    define: unsafe extern "C" fn(ConnPtr, *const c_char) -> NetPtr,
    name: unsafe extern "C" fn(NetPtr) -> *const c_char,
    is_active: unsafe extern "C" fn(NetPtr) -> c_int,
    is_persistent: unsafe extern "C" fn(NetPtr) -> c_int,
    xml_desc: unsafe extern "C" fn(NetPtr, c_uint) -> *mut c_char,
    create: unsafe extern "C" fn(NetPtr) -> c_int,
    destroy: unsafe extern "C" fn(NetPtr) -> c_int,
    free: unsafe extern "C" fn(NetPtr) -> c_int,
    last_message: unsafe extern "C" fn() -> *const c_char,
}

/// Resolves `name` in `handle` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the C signature libvirt declares for `name`.
unsafe fn symbol<T: Copy>(handle: *mut c_void, name: &CStr) -> Result<T, String> {
    let p = libc::dlsym(handle, name.as_ptr());
    if p.is_null() {
        return Err(format!("{SONAME} has no {}", name.to_string_lossy()));
    }
    // SAFETY: a function pointer is pointer-sized; the caller names its signature.
    Ok(std::mem::transmute_copy::<*mut c_void, T>(&p))
}

/// Quiets libvirt's default error handler (it prints every error to stderr): errors are
/// returned with their message instead.
extern "C" fn ignore_error(_data: *mut c_void, _error: *mut c_void) {}

fn load() -> Result<Lib, String> {
    let soname = CString::new(SONAME).expect("no NUL in the soname");
    // SAFETY: dlopen of a library by soname; RTLD_LOCAL keeps its symbols out of ours.
    let handle = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a static message (or NULL) about the failed dlopen.
        let why = unsafe { libc::dlerror() };
        let why = match why.is_null() {
            true => "not found".to_owned(),
            // SAFETY: a NUL-terminated string from dlerror.
            false => unsafe { CStr::from_ptr(why) }
                .to_string_lossy()
                .into_owned(),
        };
        return Err(format!(
            "libvirt's client library cannot be loaded ({why}); install it \
             (Debian: libvirt0, Fedora: libvirt-libs)"
        ));
    }
    // SAFETY: each signature below is the one libvirt's public headers declare.
    unsafe {
        let set_error: unsafe extern "C" fn(*mut c_void, extern "C" fn(*mut c_void, *mut c_void)) =
            symbol(handle, c"virSetErrorFunc")?;
        set_error(std::ptr::null_mut(), ignore_error);
        let init: unsafe extern "C" fn() -> c_int = symbol(handle, c"virInitialize")?;
        if init() < 0 {
            return Err("libvirt's client library failed to initialise".into());
        }
        Ok(Lib {
            open: symbol(handle, c"virConnectOpen")?,
            close: symbol(handle, c"virConnectClose")?,
            list_all: symbol(handle, c"virConnectListAllNetworks")?,
            lookup: symbol(handle, c"virNetworkLookupByName")?,
            define: symbol(handle, c"virNetworkDefineXML")?,
            name: symbol(handle, c"virNetworkGetName")?,
            is_active: symbol(handle, c"virNetworkIsActive")?,
            is_persistent: symbol(handle, c"virNetworkIsPersistent")?,
            xml_desc: symbol(handle, c"virNetworkGetXMLDesc")?,
            create: symbol(handle, c"virNetworkCreate")?,
            destroy: symbol(handle, c"virNetworkDestroy")?,
            free: symbol(handle, c"virNetworkFree")?,
            last_message: symbol(handle, c"virGetLastErrorMessage")?,
        })
    }
}

/// The library, loaded on first use; its loading error, every time, if it cannot be.
fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// libvirt's message for the last failed call on this thread.
fn last_error(lib: &Lib) -> String {
    // SAFETY: virGetLastErrorMessage returns a static or thread-local string, never NULL.
    let p = unsafe { (lib.last_message)() };
    match p.is_null() {
        true => "unknown libvirt error".into(),
        // SAFETY: a NUL-terminated string owned by libvirt, copied at once.
        false => unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned(),
    }
}

/// Text for a C string argument (a NUL inside cannot be passed to libvirt).
fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

/// An open connection, closed when dropped.
pub struct Connection {
    lib: &'static Lib,
    ptr: ConnPtr,
}

// SAFETY: libvirt's connection objects are thread-safe (reference counted, locked).
unsafe impl Send for Connection {}

impl Connection {
    /// Connects to `uri`; the error is libvirt's message (or why the library is missing).
    pub fn open(uri: &str) -> Result<Self, String> {
        let lib = lib()?;
        let c_uri = c_string(uri)?;
        // SAFETY: a valid NUL-terminated URI; a NULL result means failure.
        let ptr = unsafe { (lib.open)(c_uri.as_ptr()) };
        match ptr.is_null() {
            true => Err(last_error(lib)),
            false => Ok(Self { lib, ptr }),
        }
    }

    /// Every network, active or not.
    pub fn networks(&self) -> Result<Vec<Net>, String> {
        let mut list: *mut NetPtr = std::ptr::null_mut();
        // SAFETY: libvirt fills `list` with a malloc'ed array of `n` network references.
        let n = unsafe { (self.lib.list_all)(self.ptr, &mut list, 0) };
        if n < 0 {
            return Err(last_error(self.lib));
        }
        let nets = (0..n as usize)
            // SAFETY: the array holds `n` references, each now owned by one `Net`.
            .map(|i| Net {
                lib: self.lib,
                ptr: unsafe { *list.add(i) },
            })
            .collect();
        // SAFETY: the array itself is ours to free (its elements were taken above).
        unsafe { libc::free(list.cast()) };
        Ok(nets)
    }

    /// The network named `name`.
    pub fn lookup(&self, name: &str) -> Result<Net, String> {
        let c_name = c_string(name)?;
        // SAFETY: valid connection and name; NULL means failure.
        self.net(unsafe { (self.lib.lookup)(self.ptr, c_name.as_ptr()) })
    }

    /// Defines (or redefines) a network from `xml`.
    pub fn define(&self, xml: &str) -> Result<Net, String> {
        let c_xml = c_string(xml)?;
        // SAFETY: valid connection and XML text; NULL means failure.
        self.net(unsafe { (self.lib.define)(self.ptr, c_xml.as_ptr()) })
    }

    fn net(&self, ptr: NetPtr) -> Result<Net, String> {
        match ptr.is_null() {
            true => Err(last_error(self.lib)),
            false => Ok(Net { lib: self.lib, ptr }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the connection is open and dropped once.
        unsafe { (self.lib.close)(self.ptr) };
    }
}

/// A reference to one network, freed when dropped.
pub struct Net {
    lib: &'static Lib,
    ptr: NetPtr,
}

impl Net {
    /// Its name.
    pub fn name(&self) -> Result<String, String> {
        // SAFETY: the string belongs to the network object, copied at once.
        let p = unsafe { (self.lib.name)(self.ptr) };
        match p.is_null() {
            true => Err(last_error(self.lib)),
            // SAFETY: non-NULL, NUL-terminated.
            false => Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()),
        }
    }

    fn flag(&self, f: unsafe extern "C" fn(NetPtr) -> c_int) -> Result<bool, String> {
        // SAFETY: a valid network reference; -1 means failure.
        match unsafe { f(self.ptr) } {
            -1 => Err(last_error(self.lib)),
            v => Ok(v == 1),
        }
    }

    /// Whether it runs.
    pub fn is_active(&self) -> Result<bool, String> {
        self.flag(self.lib.is_active)
    }

    /// Whether it has a persistent definition.
    pub fn is_persistent(&self) -> Result<bool, String> {
        self.flag(self.lib.is_persistent)
    }

    /// Its XML (`flags`: 0 for the live one, [`XML_INACTIVE`] for the definition).
    pub fn xml(&self, flags: c_uint) -> Result<String, String> {
        // SAFETY: libvirt returns a malloc'ed string (ours to free) or NULL on failure.
        let p = unsafe { (self.lib.xml_desc)(self.ptr, flags) };
        if p.is_null() {
            return Err(last_error(self.lib));
        }
        // SAFETY: non-NULL, NUL-terminated, freed once after the copy.
        let text = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        unsafe { libc::free(p.cast()) };
        Ok(text)
    }

    fn act(&self, f: unsafe extern "C" fn(NetPtr) -> c_int) -> Result<(), String> {
        // SAFETY: a valid network reference; a negative result means failure.
        match unsafe { f(self.ptr) } < 0 {
            true => Err(last_error(self.lib)),
            false => Ok(()),
        }
    }

    /// Starts it (`virsh net-start`).
    pub fn create(&self) -> Result<(), String> {
        self.act(self.lib.create)
    }

    /// Stops it (`virsh net-destroy`).
    pub fn destroy(&self) -> Result<(), String> {
        self.act(self.lib.destroy)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // SAFETY: the reference is valid and dropped once.
        unsafe { (self.lib.free)(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_loaded_only_when_first_used_and_answers() {
        let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
        // Other tests in this process may have loaded it already; a fresh process has not.
        let conn = Connection::open("test:///default").unwrap();
        assert!(maps().contains("libvirt.so.0"));
        let nets = conn.networks().unwrap();
        let default = nets
            .iter()
            .find(|n| n.name().unwrap() == "default")
            .unwrap();
        assert!(default.is_active().unwrap() && default.is_persistent().unwrap());
        assert!(default.xml(0).unwrap().contains("<bridge name='virbr0'"));
        let err = conn.lookup("nope").err().unwrap();
        assert!(err.contains("nope"), "{err}");
        let err = Connection::open("bogus:///x").err().unwrap();
        assert!(!err.is_empty());
    }
}
