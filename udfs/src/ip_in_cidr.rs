//! `ip_in_cidr(ip, cidr, …)`: whether an address lies in a network (in one of several), IPv4 or IPv6.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, BooleanArray, BooleanBufferBuilder, StringArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_bool, to_utf8};

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `2001:db8::/32`, or a single address). NULL when either is not an
/// address (`AWS Internal`, a service host name) or the families differ.
pub fn ip_in_cidr(ip: &str, cidr: &str) -> Option<bool> {
    Network::parse(cidr)?.holds(address(ip)?)
}

/// Whether `ip` is in any of `networks`, as `OR` of each answer: true when in one, else NULL when one answer is,
/// else false. A network that is not one answers NULL.
fn in_any(ip: Option<&str>, networks: impl Iterator<Item = Option<Network>>) -> Option<bool> {
    let ip = address(ip?)?;
    let mut answer = Some(false);
    for n in networks {
        match n.and_then(|n| n.holds(ip)) {
            Some(true) => return Some(true),
            None => answer = None,
            Some(false) => {}
        }
    }
    answer
}

/// An address as CloudTrail's `sourceIPAddress` holds one; `None` for anything else.
fn address(ip: &str) -> Option<IpAddr> {
    if let Some(v4) = dotted_quad(ip.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let ip = ip.trim();
    // Nothing else can be in an address (IPv6 has hexadecimal digits, colons, and dots in an IPv4 tail): a
    // service's host name (`s3.amazonaws.com`) or `AWS Internal` is not read twice to find that out.
    if !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
        return None;
    }
    Some(normalise(ip.parse::<IpAddr>().ok()?))
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

    /// Whether the address is in the network; NULL when it is of the other family.
    fn holds(&self, ip: IpAddr) -> Option<bool> {
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

/// A column of addresses against networks read once: each address read once and tested against them all, the
/// answers and their validity written as bitmaps. A `|cidr` rule tests every event's source address; with a list
/// of networks compiled to a call per network, each address was read again for each (the bench's two-network
/// rule: 28 ms of CPU over the narrow lake's 553,000 events, 17 ms as one call).
fn over_column(texts: &StringArray, networks: &[Network]) -> BooleanArray {
    let mut values = BooleanBufferBuilder::new(texts.len());
    let mut valid = BooleanBufferBuilder::new(texts.len());
    for i in 0..texts.len() {
        let answer = in_any(texts.is_valid(i).then(|| texts.value(i)), networks.iter().map(|n| Some(*n)));
        values.append(answer == Some(true));
        valid.append(answer.is_some());
    }
    BooleanArray::new(values.finish(), Some(NullBuffer::new(valid.finish())))
}

/// An IPv4 address in the one form CloudTrail writes (`192.0.2.1`), read by hand: the standard library's parser, for
/// a `|cidr` rule over every event's source address, was 3% of a Sigma directory's CPU. What it reads, the
/// standard library reads the same (four decimal octets up to 255, no leading zero); anything else is left to it.
fn dotted_quad(text: &[u8]) -> Option<Ipv4Addr> {
    let (mut address, mut octet, mut digits, mut dots) = (0u32, 0u32, 0, 0);
    for &b in text {
        if b.is_ascii_digit() {
            // No leading zero, at most three digits (and so no overflow), at most 255.
            if digits == 3 || (digits == 1 && octet == 0) {
                return None;
            }
            octet = octet * 10 + u32::from(b - b'0');
            digits += 1;
            if octet > 255 {
                return None;
            }
        } else if b == b'.' && digits > 0 && dots < 3 {
            (address, octet, digits, dots) = (address << 8 | octet, 0, 0, dots + 1);
        } else {
            return None;
        }
    }
    (dots == 3 && digits > 0).then(|| Ipv4Addr::from(address << 8 | octet))
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
        IpInCidr { signature: Signature::user_defined(Volatility::Immutable) }
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
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.len() < 2 {
            return plan_err!("ip_in_cidr takes an address and at least one network");
        }
        let text = |t: &DataType| if t.is_string() { t.clone() } else { DataType::Utf8 };
        Ok(args.iter().map(text).collect())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Networks given once for the column (a Sigma rule's `|cidr`, a query's literals) are read once, not per row.
        if let [ColumnarValue::Array(ips), networks @ ..] = &args.args[..]
            && let Some(networks) = networks
                .iter()
                .map(|n| match n {
                    ColumnarValue::Scalar(s) => s.try_as_str().flatten().and_then(Network::parse),
                    ColumnarValue::Array(_) => None,
                })
                .collect::<Option<Vec<Network>>>()
        {
            return Ok(ColumnarValue::Array(Arc::new(over_column(&to_utf8(ips)?, &networks))));
        }
        map_to_bool(&args.args, args.number_rows, |s, r| {
            in_any(s.get(0, r), (1..args.args.len()).map(|a| s.get(a, r).and_then(Network::parse)))
        })
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether an IP address lies in a CIDR block (IPv4 or IPv6; a bare address is a /32 or /128), or \
                 in one of several: ip_in_cidr(ip, a, b) is ip_in_cidr(ip, a) OR ip_in_cidr(ip, b), the address \
                 read once. NULL when the text is not an address, such as 'AWS Internal' or a service host name \
                 (see source_ip_kind to tell those apart), or of the other family.",
                "ip_in_cidr(ip, cidr[, cidr…])",
                "SELECT * FROM cloudtrail WHERE NOT ip_in_cidr(sourceipaddress, '203.0.113.0/24')",
            )
            .with_argument("ip", "An IPv4 or IPv6 address")
            .with_argument("cidr", "A network such as 10.0.0.0/8 or 2001:db8::/32; more than one for any of them")
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

    /// The hand reader of IPv4 addresses reads what the standard library reads, and nothing else: edge cases, then
    /// every string of up to seven characters from digits and dots, and random ones with other characters.
    #[test]
    fn dotted_quads_read_as_the_standard_library_reads_them() {
        let agree = |s: &str| assert_eq!(dotted_quad(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{s:?}");
        for s in [
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "0.0.0.0",
            "1.2.3",
            "1.2.3.4.",
            "1..2.3",
            "+1.2.3.4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1.2.3.4/8",
            "",
            "1000.1.1.1",
            "1.2.3.-4",
            "١.2.3.4",
        ] {
            agree(s);
        }
        let alphabet = ['0', '1', '2', '5', '9', '.'];
        let mut strings = vec![String::new()];
        for _ in 0..7 {
            strings = strings.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            strings.iter().for_each(|s| agree(s));
        }
        let noisy = ['0', '1', '2', '5', '6', '9', '.', '.', ':', 'a', ' ', '-', '+'];
        let mut seed = 7u64;
        for _ in 0..200_000 {
            let s: String = (0..16)
                .map_while(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let r = (seed >> 33) as usize;
                    (!r.is_multiple_of(17)).then(|| noisy[r % noisy.len()])
                })
                .collect();
            agree(&s);
        }
    }

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

    /// A column tested against networks gives, row by row, what `OR` of the single addresses' answers gives: NULL
    /// for NULL, for what is not an address, and for the other family unless another network holds the address.
    #[test]
    fn a_column_answers_as_its_rows_do() {
        let rows = [
            Some("192.0.2.1"),
            None,
            Some("192.0.3.1"),
            Some(" 192.0.2.7 "),
            Some("AWS Internal"),
            Some("s3.amazonaws.com"),
            Some("::ffff:192.0.2.9"),
            Some("2001:db8::1"),
            Some("192.0.2.01"),
            Some(""),
        ];
        let texts = StringArray::from(rows.to_vec());
        let kleene_or = |a: Option<bool>, b: Option<bool>| match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        };
        let cidrs = ["192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32", "192.0.3.0/24"];
        for (i, a) in cidrs.iter().enumerate() {
            for b in &cidrs[i..] {
                let networks = [Network::parse(a).unwrap(), Network::parse(b).unwrap()];
                let ones = [&networks[..1], &networks[..]];
                let wants: [Vec<Option<bool>>; 2] = [
                    rows.iter().map(|r| r.and_then(|ip| ip_in_cidr(ip, a))).collect(),
                    rows.iter().map(|r| r.and_then(|ip| kleene_or(ip_in_cidr(ip, a), ip_in_cidr(ip, b)))).collect(),
                ];
                for (networks, want) in ones.into_iter().zip(wants) {
                    assert_eq!(over_column(&texts, networks).iter().collect::<Vec<_>>(), want, "{a} {b}");
                }
            }
        }
        let both = [Network::parse("192.0.2.0/24").unwrap(), Network::parse("2001:db8::/32").unwrap()];
        let out: Vec<_> = over_column(&texts, &both).iter().collect();
        assert_eq!(out[..5], [Some(true), None, None, Some(true), None]);
        assert_eq!(out[7], Some(true));
    }

    /// Networks as columns, one of them not a network: the same answers, row by row.
    #[test]
    fn several_networks_over_every_encoding() {
        let ips = [Some("192.0.2.1"), Some("192.0.2.1"), Some("10.1.1.1"), Some("AWS Internal")];
        let a = [Some("10.0.0.0/8"), Some("10.0.0.0/8"), Some("10.0.0.0/8"), Some("0.0.0.0/0")];
        let b = [Some("192.0.2.0/24"), Some("nonsense"), Some("nonsense"), Some("0.0.0.0/0")];
        for ((ip, a), b) in encodings(&ips).into_iter().zip(encodings(&a)).zip(encodings(&b)) {
            let out = call(&IpInCidr::default(), vec![ip, a, b]);
            let out: Vec<_> = out.as_boolean().iter().collect();
            assert_eq!(out, [Some(true), None, Some(true), None]);
        }
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
