//! `ip_in_cidr(ip, cidr)`: whether an address lies in a network, IPv4 or IPv6.

use std::net::IpAddr;
use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_bool};

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `2001:db8::/32`, or a single address). NULL when either is not an
/// address (`AWS Internal`, a service host name) or the families differ.
pub fn ip_in_cidr(ip: &str, cidr: &str) -> Option<bool> {
    Network::parse(cidr)?.holds(ip)
}

/// A network, parsed once for a whole column of addresses.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    net: IpAddr,
    bits: u32,
}

impl Network {
    pub fn parse(cidr: &str) -> Option<Network> {
        let (net, bits) = match cidr.trim().split_once('/') {
            Some((n, b)) => (normalise(n.parse::<IpAddr>().ok()?), Some(b.parse::<u32>().ok()?)),
            None => (normalise(cidr.trim().parse::<IpAddr>().ok()?), None),
        };
        let width = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(width);
        (bits <= width).then_some(Network { net, bits })
    }

    /// Whether the address is in the network; NULL when it is not an address or of the other family.
    pub fn holds(&self, ip: &str) -> Option<bool> {
        let ip = match dotted_quad(ip.as_bytes()) {
            Some(v4) => IpAddr::V4(v4.into()),
            None => normalise(ip.trim().parse::<IpAddr>().ok()?),
        };
        match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
                Some(u32::from(a) & mask == u32::from(n) & mask)
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits).unwrap_or(0);
                Some(u128::from(a) & mask == u128::from(n) & mask)
            }
            _ => None,
        }
    }
}

/// A plain IPv4 address (`192.0.2.1`), read in a few nanoseconds: the standard library's parser takes five times
/// as long, and most of a trail's source addresses are such. Everything else (`None`) is left to it: spaces
/// around, IPv6, host names, `AWS Internal`. Accepts only what it accepts (four octets of at most three digits,
/// none past 255, no leading zero), as the same address.
fn dotted_quad(s: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    let mut at = 0;
    for octet in 0..4 {
        if octet > 0 {
            (s.get(at) == Some(&b'.')).then_some(())?;
            at += 1;
        }
        let digits = s[at..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
        let n = s[at..at + digits].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        if digits == 0 || digits > 3 || n > 255 || (digits > 1 && s[at] == b'0') {
            return None;
        }
        value = value << 8 | n;
        at += digits;
    }
    (at == s.len()).then_some(value)
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) compare as IPv4.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IpInCidr {
    signature: Signature,
}

impl Default for IpInCidr {
    fn default() -> Self {
        IpInCidr { signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for IpInCidr {
    fn name(&self) -> &str {
        "ip_in_cidr"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // One network for the column (a Sigma rule's `|cidr`, a query's literal) is parsed once, not per row.
        if let [ColumnarValue::Array(_), ColumnarValue::Scalar(cidr)] = &args.args[..]
            && let Some(network) = cidr.try_as_str().flatten().and_then(Network::parse)
        {
            return map_to_bool(&args.args[..1], args.number_rows, |s, r| network.holds(s.get(0, r)?));
        }
        map_to_bool(&args.args, args.number_rows, |s, r| ip_in_cidr(s.get(0, r)?, s.get(1, r)?))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether an IP address lies in a CIDR block (IPv4 or IPv6; a bare address is a /32 or /128). NULL \
                 when the text is not an address, such as 'AWS Internal' or a service host name: see \
                 source_ip_kind to tell those apart.",
                "ip_in_cidr(ip, cidr)",
                "SELECT * FROM cloudtrail WHERE NOT ip_in_cidr(sourceipaddress, '203.0.113.0/24')",
            )
            .with_argument("ip", "An IPv4 or IPv6 address")
            .with_argument("cidr", "A network such as 10.0.0.0/8 or 2001:db8::/32")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{call, encodings};
    use datafusion::arrow::array::{Array, AsArray};

    #[test]
    fn cidr_cases() {
        let cases = [
            ("192.0.2.1", "192.0.2.0/24", Some(true)),
            ("192.0.3.1", "192.0.2.0/24", Some(false)),
            ("10.1.2.3", "0.0.0.0/0", Some(true)),
            ("192.0.2.1", "192.0.2.1", Some(true)),
            ("2001:db8::1", "2001:db8::/32", Some(true)),
            ("2001:db9::1", "2001:db8::/32", Some(false)),
            ("::ffff:192.0.2.1", "192.0.2.0/24", Some(true)),
            ("192.0.2.1", "2001:db8::/32", None),
            ("AWS Internal", "10.0.0.0/8", None),
            ("s3.amazonaws.com", "10.0.0.0/8", None),
            ("192.0.2.1", "192.0.2.0/33", None),
            ("192.0.2.1", "nonsense", None),
        ];
        for (ip, cidr, want) in cases {
            assert_eq!(ip_in_cidr(ip, cidr), want, "{ip} in {cidr}");
        }
    }

    #[test]
    fn plain_addresses_are_read_as_the_standard_library_reads_them() {
        let texts = [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1..2.3",
            "1.2.3.",
            "1.2.3.0000",
            "1.2.3.004",
            "10.0.0.10",
            "1.2.3.4a",
            "",
            "a.b.c.d",
            "::1",
            "1.2.3.999",
        ];
        for t in texts {
            let std = t.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
            let ours = dotted_quad(t.as_bytes());
            // Ours reads what it reads as the standard library does, and leaves nothing to it that it reads
            // but spaces (which it trims first).
            assert!(ours.is_none() || ours == std, "{t:?}: {ours:?} against {std:?}");
            assert!(ours.is_some() || std.is_none(), "{t:?} was left to the slow parser");
        }
        let net = Network::parse("185.220.100.0/22").unwrap();
        assert_eq!(net.holds("185.220.103.255"), Some(true));
        assert_eq!(net.holds("185.220.104.0"), Some(false));
        assert_eq!(net.holds(" 185.220.101.1 "), Some(true));
        assert_eq!(net.holds("185.220.101.01"), None);
    }

    #[test]
    fn over_every_encoding() {
        let ips = [Some("192.0.2.1"), Some("AWS Internal"), None];
        let nets = [Some("192.0.2.0/24"), Some("10.0.0.0/8"), Some("10.0.0.0/8")];
        for (a, b) in encodings(&ips).into_iter().zip(encodings(&nets)) {
            let out = call(&IpInCidr::default(), vec![a, b]);
            let out = out.as_boolean();
            assert!(out.value(0));
            assert!(out.is_null(1) && out.is_null(2));
        }
    }
}
