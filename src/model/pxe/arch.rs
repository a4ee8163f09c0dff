//! Client system architectures (DHCP option 93, RFC 4578 and IANA's registry) that a profile
//! can give a boot file, with the names dnsmasq's `pxe-service` knows them by.
//!
//! dnsmasq's names are positions in a table (src/option.c): `x86-64_EFI` is 7 and `BC_EFI` is
//! 9. Before 2.76 the two were swapped (following an error in RFC 4578), which is why old
//! guides such as the FOG seed pair `BC_EFI` with 64-bit machines; UEFI PXE needs 2.76 anyway.

use std::fmt;

/// The prefix of every dnsmasq tag virtmasq's PXE lines set, so they never collide with tags
/// of the administrator's own configuration.
pub const TAG_PREFIX: &str = "virtmasq-";

/// One architecture a boot file is given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientArch {
    /// 0: x86 BIOS (legacy PXE ROMs).
    Bios,
    /// 6: 32-bit x86 UEFI.
    EfiIa32,
    /// 7: x86-64 UEFI.
    EfiX64,
    /// 9: "EFI BC", sent by some x86-64 UEFI firmware (VMware's, for one).
    EfiBc,
    /// 10: 32-bit ARM UEFI.
    EfiArm32,
    /// 11: 64-bit ARM UEFI.
    EfiArm64,
    /// 15: 32-bit x86 UEFI HTTP boot.
    HttpIa32,
    /// 16: x86-64 UEFI HTTP boot.
    HttpX64,
    /// 18: 32-bit ARM UEFI HTTP boot.
    HttpArm32,
    /// 19: 64-bit ARM UEFI HTTP boot.
    HttpArm64,
}

impl ClientArch {
    /// Every architecture, in the order lines are rendered.
    pub const ALL: [ClientArch; 10] = [
        ClientArch::Bios,
        ClientArch::EfiIa32,
        ClientArch::EfiX64,
        ClientArch::EfiBc,
        ClientArch::EfiArm32,
        ClientArch::EfiArm64,
        ClientArch::HttpIa32,
        ClientArch::HttpX64,
        ClientArch::HttpArm32,
        ClientArch::HttpArm64,
    ];

    /// The option 93 value.
    pub fn code(self) -> u16 {
        match self {
            ClientArch::Bios => 0,
            ClientArch::EfiIa32 => 6,
            ClientArch::EfiX64 => 7,
            ClientArch::EfiBc => 9,
            ClientArch::EfiArm32 => 10,
            ClientArch::EfiArm64 => 11,
            ClientArch::HttpIa32 => 15,
            ClientArch::HttpX64 => 16,
            ClientArch::HttpArm32 => 18,
            ClientArch::HttpArm64 => 19,
        }
    }

    /// The client system type name dnsmasq's `pxe-service` takes for this architecture (dnsmasq
    /// >= 2.76); None for HTTP boot, which is not PXE and has no `pxe-service`.
    pub fn dnsmasq_csa(self) -> Option<&'static str> {
        match self {
            ClientArch::Bios => Some("x86PC"),
            ClientArch::EfiIa32 => Some("IA32_EFI"),
            ClientArch::EfiX64 => Some("x86-64_EFI"),
            ClientArch::EfiBc => Some("BC_EFI"),
            ClientArch::EfiArm32 => Some("ARM32_EFI"),
            ClientArch::EfiArm64 => Some("ARM64_EFI"),
            _ => None,
        }
    }

    /// Whether clients of this architecture boot over HTTP (UEFI HTTP boot): their boot file is
    /// a URL, and the offer must carry vendor class `HTTPClient` or the firmware ignores it.
    pub fn is_http_boot(self) -> bool {
        self.dnsmasq_csa().is_none()
    }

    /// The key of this architecture in a profile's `boot_files` table.
    pub fn key(self) -> &'static str {
        match self {
            ClientArch::Bios => "bios",
            ClientArch::EfiIa32 => "efi_ia32",
            ClientArch::EfiX64 => "efi_x64",
            ClientArch::EfiBc => "efi_bc",
            ClientArch::EfiArm32 => "efi_arm32",
            ClientArch::EfiArm64 => "efi_arm64",
            ClientArch::HttpIa32 => "http_ia32",
            ClientArch::HttpX64 => "http_x64",
            ClientArch::HttpArm32 => "http_arm32",
            ClientArch::HttpArm64 => "http_arm64",
        }
    }

    /// The tag `dhcp-match=set:<tag>,option:client-arch,<code>` sets. It means the same on
    /// every network, so fragments of several networks may all define it.
    pub fn tag(self) -> String {
        format!("{TAG_PREFIX}arch{}", self.code())
    }
}

impl fmt::Display for ClientArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (option 93 = {})", self.key(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsmasq_names_match_its_table() {
        // dnsmasq's CSA table, src/option.c (2.76 and later): the index is the arch code.
        let table = [
            "x86PC",
            "PC98",
            "IA64_EFI",
            "Alpha",
            "Arc_x86",
            "Intel_Lean_Client",
            "IA32_EFI",
            "x86-64_EFI",
            "Xscale_EFI",
            "BC_EFI",
            "ARM32_EFI",
            "ARM64_EFI",
        ];
        for arch in ClientArch::ALL {
            if let Some(name) = arch.dnsmasq_csa() {
                assert_eq!(table[usize::from(arch.code())], name, "{arch}");
            }
        }
        assert_eq!(ClientArch::EfiX64.dnsmasq_csa(), Some("x86-64_EFI"));
        assert_eq!(ClientArch::EfiBc.code(), 9);
    }

    #[test]
    fn http_boot_archs() {
        let http: Vec<u16> = ClientArch::ALL
            .iter()
            .filter(|a| a.is_http_boot())
            .map(|a| a.code())
            .collect();
        assert_eq!(http, [15, 16, 18, 19]);
        assert_eq!(ClientArch::EfiArm64.tag(), "virtmasq-arch11");
    }
}
