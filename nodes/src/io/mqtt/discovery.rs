//! Home Assistant MQTT discovery: one retained `sensor` config per channel,
//! and the availability topic they share.
//!
//! Configs go to `PREFIX/sensor/tandem_GATEWAY/OBJECT/config`, `OBJECT`
//! being the channel with `.` replaced by `_`. Each names the channel's
//! state topic and a `value_template` that reads the record's value (the
//! last record's, for batches), the unit (`C` is written `°C`), a device
//! class and state class where the unit says, and the availability topic:
//! `online` (retained) while the sink is connected, `offline` (retained)
//! when it stops or, through the MQTT last will, when the broker loses it.
//! They are published at every connection and again whenever Home
//! Assistant announces itself (`PREFIX/status` = `online`).

use super::payload::json_string;

/// What Home Assistant is told about one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sensor {
    /// The channel's name.
    pub channel: String,
    /// Its unit in the graph ("" for none).
    pub unit: String,
    /// Where its records are published.
    pub state_topic: String,
}

/// The discovery settings of one sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The discovery prefix, `homeassistant` by default.
    pub prefix: String,
    /// The gateway id.
    pub gateway: String,
    /// The sink's id in the graph.
    pub sink: String,
    /// The availability topic.
    pub availability: String,
    /// True when messages carry batches of records.
    pub batch: bool,
}

impl Discovery {
    /// The topic Home Assistant announces itself on.
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The config topic and payload of `sensor`.
    pub fn config(&self, sensor: &Sensor) -> (String, Vec<u8>) {
        let object = sensor.channel.replace('.', "_");
        let topic = format!(
            "{}/sensor/tandem_{}/{object}/config",
            self.prefix, self.gateway
        );
        let (unit, device_class, state_class) = classes(&sensor.unit);
        let template = if self.batch {
            "{{ value_json.records[-1].value }}"
        } else {
            "{{ value_json.value }}"
        };
        let mut out = Vec::with_capacity(512);
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.push(b',');
            json_string(name, out);
            out.push(b':');
            json_string(value, out);
        };
        out.extend_from_slice(b"{\"name\":");
        json_string(&sensor.channel, &mut out);
        field(
            &mut out,
            "unique_id",
            &format!("tandem_{}_{}_{object}", self.gateway, self.sink),
        );
        field(&mut out, "state_topic", &sensor.state_topic);
        field(&mut out, "value_template", template);
        if !unit.is_empty() {
            field(&mut out, "unit_of_measurement", unit);
        }
        if let Some(class) = device_class {
            field(&mut out, "device_class", class);
        }
        field(&mut out, "state_class", state_class);
        field(&mut out, "availability_topic", &self.availability);
        field(&mut out, "payload_available", "online");
        field(&mut out, "payload_not_available", "offline");
        out.extend_from_slice(b",\"device\":{\"identifiers\":[");
        json_string(&format!("tandem_{}", self.gateway), &mut out);
        out.extend_from_slice(b"],\"name\":");
        json_string(&format!("tandem {}", self.gateway), &mut out);
        out.extend_from_slice(
            b",\"manufacturer\":\"tandem\",\"model\":\"gateway\",\"sw_version\":",
        );
        json_string(env!("CARGO_PKG_VERSION"), &mut out);
        out.extend_from_slice(b"}}");
        (topic, out)
    }
}

/// The unit as Home Assistant writes it, its device class, its state class.
fn classes(unit: &str) -> (&str, Option<&'static str>, &'static str) {
    match unit {
        "W" | "kW" => (unit, Some("power"), "measurement"),
        "Wh" | "kWh" => (unit, Some("energy"), "total"),
        "V" => (unit, Some("voltage"), "measurement"),
        "A" => (unit, Some("current"), "measurement"),
        "Hz" => (unit, Some("frequency"), "measurement"),
        "C" => ("°C", Some("temperature"), "measurement"),
        _ => (unit, None, "measurement"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_names_its_topics_unit_and_device() {
        let d = Discovery {
            prefix: "homeassistant".into(),
            gateway: "gw1".into(),
            sink: "up".into(),
            availability: "tandem/gw1/availability".into(),
            batch: false,
        };
        let (topic, payload) = d.config(&Sensor {
            channel: "boiler.temp".into(),
            unit: "C".into(),
            state_topic: "tandem/gw1/boiler.temp".into(),
        });
        assert_eq!(topic, "homeassistant/sensor/tandem_gw1/boiler_temp/config");
        assert_eq!(
            String::from_utf8(payload).unwrap_or_default(),
            concat!(
                r#"{"name":"boiler.temp","unique_id":"tandem_gw1_up_boiler_temp","#,
                r#""state_topic":"tandem/gw1/boiler.temp","value_template":"{{ value_json.value }}","#,
                r#""unit_of_measurement":"°C","device_class":"temperature","state_class":"measurement","#,
                r#""availability_topic":"tandem/gw1/availability","payload_available":"online","payload_not_available":"offline","#,
                r#""device":{"identifiers":["tandem_gw1"],"name":"tandem gw1","manufacturer":"tandem","model":"gateway","sw_version":"0.1.0"}}"#
            )
        );
        assert_eq!(d.status_topic(), "homeassistant/status");
    }
}
